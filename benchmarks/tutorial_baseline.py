"""The classic PyTorch VAE example (pytorch/examples, vae/main.py), written the way it is there.

Used as the baseline that vaekit is measured against: a per-item Dataset that turns each image
into a float tensor in __getitem__, a shuffled DataLoader, a decoder ending in a sigmoid and
binary_cross_entropy(reduction='sum') + KL. torchvision is replaced by an equivalent Dataset over
the same IDX files (ToTensor divides uint8 by 255). On a machine with CUDA it runs there as the
example does: one loader worker with pinned memory, each batch moved with `.to(device)`.

For the `mlp` preset the model is the example's own (fc1, fc21, fc22, fc3, fc4); for the conv
presets it is vaekit's encoder and decoder of the same layout, used the tutorial way (sigmoid on
the output, probabilities into binary_cross_entropy).

    python benchmarks/tutorial_baseline.py --epochs 10 --seed 1
trains on all 60,000 training images and prints the test loss (nats per image) as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaekit.config import RunConfig
from vaekit.data import DatasetSplits
from vaekit.data.builtin import load_builtin
from vaekit.models.conv import ConvDecoder, ConvEncoder
from vaekit.presets import preset_config


class PerItemImages(Dataset):
    def __init__(self, images: np.ndarray) -> None:
        self.images = images  # uint8 (N, 1, 28, 28)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images[index]).float() / 255.0  # what ToTensor does per item


class TutorialVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h1), self.fc22(h1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


class TutorialConvVAE(nn.Module):
    """vaekit's conv layout, used the tutorial way: sigmoid output, probabilities into BCE."""

    def __init__(self, config: RunConfig, shape: tuple[int, int, int]) -> None:
        super().__init__()
        m = config.model
        layout = (m.conv_channels, m.conv_strides, m.kernel_size)
        self.encoder = ConvEncoder(shape, *layout, 2 * m.latent_dim, m.activation)
        self.decoder = ConvDecoder(shape, *layout, m.latent_dim, m.activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.decoder(z)).view(len(x), -1), mu, logvar


def loss_function(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon, x.view(len(x), -1), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def build(config: RunConfig, shape: tuple[int, int, int]) -> nn.Module:
    return TutorialVAE() if config.model.architecture == "mlp" else TutorialConvVAE(config, shape)


def device_and_loader_settings() -> tuple[torch.device, dict[str, Any]]:
    """The example's `args.cuda` branch: the GPU when there is one, with its loader settings."""
    if torch.cuda.is_available():
        return torch.device("cuda"), {"num_workers": 1, "pin_memory": True}
    return torch.device("cpu"), {}


def test_loss(model: nn.Module, images: np.ndarray, batch_size: int) -> float:
    model.eval()
    device, settings = device_and_loader_settings()
    loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=False, **settings)
    total = 0.0
    with torch.no_grad():
        for x in loader:
            x = x.to(device)
            recon, mu, logvar = model(x)
            total += loss_function(recon, x, mu, logvar).item()
    model.train()
    return total / len(images)


def train_epochs(
    config: RunConfig, splits: DatasetSplits, epochs: int, seed: int = 0, test_each_epoch: bool = True
) -> list[dict[str, Any]]:
    """Train the tutorial way; per epoch the training seconds and (optionally) the test loss."""
    torch.manual_seed(seed)
    device, settings = device_and_loader_settings()
    model = build(config, splits.shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    images = PerItemImages(splits.train.images)
    loader = DataLoader(images, batch_size=config.train.batch_size, shuffle=True, **settings)
    rows = []
    for _ in range(epochs):
        started = time.perf_counter()
        train_loss = 0.0
        for x in loader:
            x = x.to(device)
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            train_loss += loss.item()  # the example's running total: one device sync per batch
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's kernels have run, not only been queued
        row: dict[str, Any] = {
            "train_seconds": time.perf_counter() - started,
            "train_loss_nats": train_loss / len(images),
        }
        if test_each_epoch:
            row["test_nelbo_nats"] = test_loss(model, splits.test.images, 1000)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    train, test, source = load_builtin("fashion-mnist", progress=False)
    splits = DatasetSplits("fashion-mnist", source, train, train.take(np.arange(0)), test)
    rows = train_epochs(preset_config("mlp"), splits, args.epochs, args.seed)
    print(json.dumps({"test_nelbo_nats": rows[-1]["test_nelbo_nats"], "epochs": rows}, indent=2))


if __name__ == "__main__":
    main()
