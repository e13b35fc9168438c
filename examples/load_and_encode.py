"""Load a trained run and encode new data: the posterior means of digits the model never saw,
used as features for a nearest-neighbour classifier (the mean is the code to use downstream; a
draw from q(z|x) adds noise).

    python examples/load_and_encode.py
"""

import tempfile

import torch
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

import vaekit

digits = load_digits()
images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (1797, 1, 8, 8)
seen, unseen = slice(0, 1500), slice(1500, None)  # the model never trains on the last 297

with tempfile.TemporaryDirectory() as folder:
    vaekit.fit(
        images[seen],
        digits.target[seen],
        out=f"{folder}/digits",
        latent_dim=8,
        hidden_sizes=(128,),
        likelihood="continuous-bernoulli",
        batch_size=64,
        epochs=30,
    )

    run = vaekit.load_run(f"{folder}/digits")  # any run folder: from fit, or from `vaekit train`
    with torch.no_grad():
        train_codes = run.model.encode(run.prepare(images[seen])).mu  # (1500, 8) posterior means
        new_codes = run.model.encode(run.prepare(images[unseen])).mu  # (297, 8)
    print(f"codes: {tuple(train_codes.shape)} for seen digits, {tuple(new_codes.shape)} for new ones")
    knn = KNeighborsClassifier(n_neighbors=5).fit(train_codes.numpy(), digits.target[seen])
    accuracy = knn.score(new_codes.numpy(), digits.target[unseen])
    print(f"5-nearest-neighbour accuracy on new digits from 8 latent numbers each: {accuracy:.3f}")
