"""Train a VAE on images that are already a tensor in memory: scikit-learn's 1,797 handwritten
digits (8x8, grey levels 0..16), scaled to [0, 1].

    python examples/train_on_tensor.py
"""

import tempfile

import torch
from sklearn.datasets import load_digits

import vaekit

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
labels = torch.tensor(digits.target)

with tempfile.TemporaryDirectory() as folder:
    run = vaekit.fit(
        images,
        labels,
        out=f"{folder}/digits",
        likelihood="continuous-bernoulli",  # a normalised density for grey pixels in [0, 1]
        hidden_sizes=(128,),
        latent_dim=8,
        batch_size=64,
        epochs=30,
    )
    summary = run.summary
    print(f"trained on {len(run.load_data().train)} digits, tested on {summary['test_images']}")
    print(f"test -ELBO: {summary['test_nelbo_nats']:.1f} nats/image ({summary['figure_description']})")
    samples = run.model.sample(4, torch.Generator().manual_seed(0))  # (4, 1, 8, 8), E[x|z]
    print(f"4 samples from the prior: {tuple(samples.shape)}, mean grey level {samples.mean():.2f}")
