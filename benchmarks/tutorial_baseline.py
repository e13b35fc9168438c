"""The classic PyTorch VAE example (pytorch/examples, vae/main.py), written the way it is there.

Used as the baseline that vaekit is measured against: a per-item Dataset that turns each image
into a float tensor in __getitem__, a shuffled DataLoader(batch_size=128), a decoder ending in a
sigmoid and binary_cross_entropy(reduction='sum') + KL. torchvision is replaced by an equivalent
Dataset over the same IDX files (ToTensor divides uint8 by 255).

    python benchmarks/tutorial_baseline.py --epochs 10 --seed 1
prints the per-epoch time and the final test loss (nats per image) as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaekit.data.builtin import load_builtin


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


def loss_function(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run(epochs: int, seed: int, train_fraction: float = 1.0) -> dict[str, float | list[float]]:
    torch.manual_seed(seed)
    train, test, _ = load_builtin("fashion-mnist", progress=False)
    train_images = train.images[: int(len(train) * train_fraction)]
    train_loader = DataLoader(PerItemImages(train_images), batch_size=128, shuffle=True)
    test_loader = DataLoader(PerItemImages(test.images), batch_size=128, shuffle=False)
    model = TutorialVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epoch_seconds = []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        for x in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - started)
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for x in test_loader:
            recon, mu, logvar = model(x)
            test_loss += loss_function(recon, x, mu, logvar).item()
    return {
        "test_nelbo_nats": test_loss / len(test_loader.dataset),  # type: ignore[arg-type]
        "epoch_seconds": epoch_seconds,
        "train_images": len(train_images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(run(args.epochs, args.seed), indent=2))


if __name__ == "__main__":
    main()
