"""Train a VAE on a table: scikit-learn's breast-cancer measurements (569 rows, 30 features).
Number columns are standardised on the training split; the run remembers how, so sampled rows
come back as a DataFrame in the table's own units.

    python examples/train_on_table.py
"""

import tempfile

from sklearn.datasets import load_breast_cancer

import vaekit

cancer = load_breast_cancer()
diagnosis = cancer.target_names[cancer.target]  # "benign" / "malignant": text labels become class names

with tempfile.TemporaryDirectory() as folder:
    run = vaekit.fit(cancer.data, diagnosis, columns=list(cancer.feature_names), out=f"{folder}/cancer", epochs=60)
    print(f"preset {run.config.preset}: {run.config.likelihood.name} likelihood, latent size {run.model.latent_dim}")
    print(f"test -ELBO: {run.summary['test_nelbo_nats']:.1f} nats/row ({run.summary['figure_description']})")
    rows = run.sample_rows(3, seed=0)  # a DataFrame of 3 rows drawn from the model, in the table's units
    for name in ("mean radius", "mean area", "mean smoothness"):
        print(f"  sampled {name:16s} {', '.join(f'{v:8.3f}' for v in rows[name])}")
