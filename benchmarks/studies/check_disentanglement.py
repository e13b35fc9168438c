"""Check that the disentanglement study (benchmarks/studies/disentanglement.toml, run by `vaekit
sweep`) computes what benchmarks/disentanglement.py computes: every run's configuration equal to
the script's, and one short run's scores equal, figure for figure, when scored both ways:

    python benchmarks/studies/check_disentanglement.py [--steps 200] [--method betatc] [--seed 0]

(dSprites is rendered into the cache on first use: about a minute and 3 GB.) Not part of the tests."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from disentanglement import config_of, score  # noqa: E402  # benchmarks/disentanglement.py

from vaekit.studies import read_study  # noqa: E402
from vaekit.studies.study import EVALUATE_DEFAULTS  # noqa: E402
from vaekit.studies.sweeps import evaluate_run_folder  # noqa: E402
from vaekit.training.run import train_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--method", default="betatc")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    study = read_study(HERE / "disentanglement.toml")
    for run in study.runs:
        method, seed = run.name.split(",seed=")
        assert run.config == config_of(method, int(seed), 8000), f"{run.name}: not the script's configuration"
    print(f"{len(study.runs)} runs: each configuration equal to the script's")
    folder = Path(tempfile.mkdtemp(prefix="vaekit-dis-")) / "run"
    train_run(config_of(args.method, args.seed, args.steps), folder, progress=False)
    script = score(folder, args.seed, 1000)["metrics"]
    assert study.evaluate is not None
    evaluate_run_folder(folder, {**EVALUATE_DEFAULTS, **study.evaluate})
    swept = json.loads((folder / "eval.json").read_text())["disentanglement"]
    pairs = {
        "beta_vae_score": (script["beta_vae_score"]["eval_accuracy"], swept["beta_vae_score"]["eval_accuracy"]),
        "factor_vae_score": (script["factor_vae_score"]["eval_accuracy"], swept["factor_vae_score"]["eval_accuracy"]),
        "mig": (script["mig"]["mig"], swept["mig"]),
        "sap": (script["sap"]["sap"], swept["sap"]),
        "dci_disentanglement": (script["dci"]["disentanglement"], swept["dci"]["disentanglement"]),
        "dci_informativeness": (script["dci"]["informativeness_test"], swept["dci"]["informativeness_test"]),
    }
    for name, (by_script, by_study) in pairs.items():
        print(f"{name}: script {by_script!r}, study {by_study!r}, {'equal' if by_script == by_study else 'DIFFERENT'}")
    assert all(a == b for a, b in pairs.values())


if __name__ == "__main__":
    main()
