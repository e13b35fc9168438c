"""Wrote the checkpoints beside this file with vaekit at commit 4910361 (before the module regrouping
of issue 13), and the outputs that code computed into expected.json. tests/test_checkpoint_compat.py
loads them with the current code and compares. Kept for the record: rerunning it with newer code
would defeat its purpose."""

import json
from pathlib import Path

import torch

from vaekit.checkpoint import save_checkpoint
from vaekit.config import DataConfig, ModelConfig, RunConfig
from vaekit.models import build_model

out = Path("tests/data/old-layout")
out.mkdir(parents=True, exist_ok=True)
variants = {
    "mlp-vamp-gaussian": (
        ModelConfig(
            architecture="mlp",
            hidden_sizes=(16,),
            latent_dim=3,
            likelihood="gaussian",
            gaussian_variance="pixel",
            prior="vamp",
            prior_components=4,
        ),
        (1, 6, 6),
    ),
    "conv-ladder-pixelcontext": (
        ModelConfig(
            architecture="conv",
            conv_channels=(4, 8),
            conv_strides=(2, 2),
            latent_dim=4,
            stochastic_layers=2,
            top_latent_dim=2,
            top_hidden_size=8,
            pixel_context_layers=2,
            pixel_context_channels=4,
        ),
        (1, 8, 8),
    ),
    "resnet-logistic-mixture": (
        ModelConfig(
            architecture="resnet",
            conv_channels=(4,),
            conv_strides=(2,),
            latent_dim=2,
            likelihood="logistic-mixture",
            logistic_components=2,
        ),
        (1, 6, 6),
    ),
}
expected = {}
for name, (model_cfg, shape) in variants.items():
    torch.manual_seed(3)
    data = DataConfig(pixel_range="symmetric") if model_cfg.likelihood.startswith("logistic") else DataConfig()
    config = RunConfig(data=data, model=model_cfg).check()
    model = build_model(model_cfg, shape)
    # Perturb every parameter so zero-initialised ones (the pixel-context head's output) matter.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    model.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand((2, *shape), generator=g)
    x = torch.round(x * 255) / 255 * 2 - 1 if data.pixel_range == "symmetric" else torch.round(x)
    eps = torch.randn((2, model.noise_dim), generator=g)
    with torch.no_grad():
        terms = model.elbo(x, eps=eps)
        z = torch.randn((2, model.latent_dim), generator=g)
        mean = model.mean_image(model.decode(z))
    save_checkpoint(out / f"{name}.safetensors", model, config, {"epoch": 1, "step": 1, "val_nelbo_nats": 1.0})
    expected[name] = {
        "x": x.tolist(),
        "eps": eps.tolist(),
        "z": z.tolist(),
        "nelbo_nats": terms.nelbo_nats.tolist(),
        "mean_image": mean.flatten().tolist(),
    }
(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print({k: v["nelbo_nats"] for k, v in expected.items()})
