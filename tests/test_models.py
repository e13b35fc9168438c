import dataclasses
import math

import pytest
import torch

from vaekit.config import ModelConfig
from vaekit.data.columns import TableSchema
from vaekit.errors import VaekitError
from vaekit.methods import choice
from vaekit.models import build_model, build_run_model
from vaekit.models.ladder import LadderVAE
from vaekit.models.pixelcontext import CONTEXT_FEATURES
from vaekit.presets import PRESETS, preset_config

SHAPES = [(1, 28, 28), (1, 32, 32), (3, 32, 32), (3, 64, 64)]
SMALL_MODELS = {
    "mlp": ModelConfig(architecture="mlp", hidden_sizes=(32, 16), latent_dim=4),
    "conv": ModelConfig(architecture="conv", conv_channels=(4, 8, 8), conv_strides=(2, 2, 1), latent_dim=4),
    "conv-gauss-pixel": ModelConfig(
        architecture="conv",
        conv_channels=(4, 8),
        conv_strides=(2, 2),
        latent_dim=3,
        activation="leaky_relu",
    ),
    "resnet": ModelConfig(architecture="resnet", conv_channels=(4, 8), conv_strides=(2, 2), res_blocks=1, latent_dim=3),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_shapes_and_gradients(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    likelihood = choice("likelihood", "gaussian", variance="pixel") if "gauss" in name else None
    model = build_model(SMALL_MODELS[name], shape, likelihood=likelihood)
    x = torch.rand(5, *shape)
    posterior = model.encode(x)
    assert posterior.mu.shape == posterior.logvar.shape == (5, model.latent_dim)
    assert model.decode(posterior.mode()).shape == (5, *shape)
    terms = model.elbo(x, generator=torch.Generator().manual_seed(0))
    assert terms.loss.shape == (5,) and torch.isfinite(terms.loss).all()
    terms.loss.mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {param_name}"
    assert model.sample(3).shape == (3, *shape)


@pytest.mark.parametrize("side", [5, 27, 28, 31, 33, 64])
def test_conv_decoder_restores_odd_and_even_sizes(side: int) -> None:
    model = build_model(SMALL_MODELS["conv"], (1, side, side + 3))
    assert model.decode(torch.zeros(2, 4)).shape == (2, 1, side, side + 3)


def test_image_too_small_for_the_stack() -> None:
    config = ModelConfig(architecture="conv", conv_channels=(4, 4, 4, 4), conv_strides=(2, 2, 2, 2))
    with pytest.raises(VaekitError, match="too small"):
        build_model(config, (1, 4, 4))


def test_presets_build_with_the_documented_layouts() -> None:
    shapes = {
        "mlp": (1, 28, 28),
        "mlp-fast": (1, 28, 28),
        "conv-small": (1, 28, 28),
        "conv-fashion": (1, 28, 28),
        "conv-32px": (1, 32, 32),
        "best": (1, 28, 28),
        "binarized-mnist": (1, 28, 28),
        "best-binarized": (1, 28, 28),
        "svae-binarized": (1, 28, 28),
        "iaf-binarized": (1, 28, 28),
        "table": (1, 1, 30),  # a row of 30 features
    }
    assert set(shapes) == set(PRESETS)
    configs = {name: preset_config(name) for name in shapes}
    # a table's run builds its likelihood from the columns fitted when it starts: 30 numbers here
    columns = TableSchema.numeric([f"x{i}" for i in range(30)])
    fitted = {"feature_names": columns.names, "column_kinds": columns.kinds, "column_categories": columns.categories}
    fitted |= {"feature_mean": (0.0,) * 30, "feature_std": (1.0,) * 30}
    configs["table"] = dataclasses.replace(configs["table"], data=dataclasses.replace(configs["table"].data, **fitted))
    models = {name: build_run_model(configs[name], shape) for name, shape in shapes.items()}
    mlp = models["mlp"]
    assert [tuple(p.shape) for p in mlp.encoder.parameters()] == [(400, 784), (400,), (40, 400), (40,)]
    assert math.prod(models["conv-small"].encoder.feature_shape) == 512
    assert models["conv-small"].encoder.feature_shape == (32, 4, 4)
    assert math.prod(models["conv-fashion"].encoder.feature_shape) == 3136
    # the table preset: 30 features -> 128 -> 128 -> 2 x 8, and a learned variance per number column
    assert [tuple(p.shape) for p in models["table"].encoder.parameters()][::2] == [(128, 30), (128, 128), (16, 128)]
    assert tuple(models["table"].likelihood.logvar.shape) == (30,)
    assert models["best-binarized"].pixel_context is not None and models["best-binarized"].latent_dim == 32
    assert models["conv-32px"].latent_dim == 128
    # pythae's S-VAE recipe: 784-256-128 to a direction in R^11 and one concentration
    svae = models["svae-binarized"]
    assert [tuple(p.shape) for p in svae.encoder.parameters()][::2] == [(256, 784), (128, 256), (12, 128)]
    assert svae.family.name == "vmf" and svae.latent_dim == 11
    iaf = models["iaf-binarized"]
    assert isinstance(iaf, LadderVAE) and iaf.flow is not None and len(iaf.flow.steps) == 2
    best = models["best"]
    assert isinstance(best, LadderVAE) and (best.bottom_dim, best.latent_dim) == (64, 32)
    assert math.prod(best.encoder.feature_shape) == 3136  # the conv-fashion network around z1
    burda = models["binarized-mnist"]
    assert [tuple(p.shape) for p in burda.encoder.parameters()][::2] == [(200, 784), (200, 200), (100, 200)]
    assert best.pixel_context is not None and best.pixel_context.layers == 3
    for name, model in models.items():
        x = torch.rand(2, *shapes[name])
        head_features = CONTEXT_FEATURES if model.pixel_context is not None else 0  # maps for the head
        assert model.decode(model.encode(x).mode()).shape == (2, x.shape[1] + head_features, *x.shape[2:])


def test_bernoulli_decoder_returns_logits_not_probabilities() -> None:
    model = build_model(SMALL_MODELS["mlp"], (1, 28, 28))
    with torch.no_grad():
        for p in model.decoder.head.parameters():
            p.fill_(5.0)
    out = model.decode(torch.ones(1, 4))
    assert out.max() > 1.0  # raw logits
    assert model.mean_image(out).max() <= 1.0


def test_residual_block_keeps_shape_is_identity_without_its_branch_and_passes_gradients() -> None:
    from vaekit.models.resnet import ResidualBlock

    torch.manual_seed(0)
    block = ResidualBlock(8, 3, "relu")
    x = torch.randn(2, 8, 5, 7, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        last_conv = block.body[-1]
        last_conv.weight.zero_()
        last_conv.bias.zero_()
    assert torch.equal(block(x), x)  # the skip path carries the input unchanged
