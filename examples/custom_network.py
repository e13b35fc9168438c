"""Plug in your own encoder and decoder: a small conv net (examples/nets.py) on the digits,
trained with vaekit's loop and loaded back. A run names its factory, never stores its code, so
loading it imports nets.py: vaekit does that only when told to trust it.

    python examples/custom_network.py
"""

import sys
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).parent))  # so that `nets` imports when run from anywhere
from nets import small_conv

import vaekit

digits = load_digits()
images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (1797, 1, 8, 8)

with tempfile.TemporaryDirectory() as folder:
    run = vaekit.fit(
        images,
        digits.target,
        out=f"{folder}/conv",
        architecture=small_conv,
        latent_dim=8,
        likelihood="continuous-bernoulli",
        batch_size=64,
        epochs=30,
    )
    print(f"network: {run.config.model.architecture}")
    print(f"test -ELBO: {run.summary['test_nelbo_nats']:.1f} nats/image")
    try:
        vaekit.load_run(f"{folder}/conv")
    except vaekit.VaekitError as refusal:
        print(f"without trust_code: refused ({str(refusal).split(';')[0]})")
    loaded = vaekit.load_run(f"{folder}/conv", trust_code=True)
    print(f"with trust_code=True: loaded, {sum(p.numel() for p in loaded.model.parameters())} parameters")
