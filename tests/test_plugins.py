"""Methods from outside vaekit: the example plug-in (examples/plugin, the variational Rényi bound)
installed into a folder of its own and put on the path, as pip would install it beside vaekit;
vaekit finds it by its entry point and trains, evaluates and resumes with it, in one process or
two. A plug-in that breaks is one line, and vaekit keeps its own methods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import blob_images
from tests.killing import train_until_killed
from tests.test_resume import final_weights

PLUGIN = Path(__file__).parent.parent / "examples" / "plugin"
TINY = ["--hidden-sizes", "16", "--latent-dim", "3", "--batch-size", "16", "--val-size", "40", "--quiet"]


def pip_install(source: Path, target: Path) -> None:
    """Install a package from its folder into `target`, offline (vaekit and torch are already here)."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    done = subprocess.run([*command, str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def vaekit(*args: str, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    command = [sys.executable, "-m", "vaekit", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("plugin") / "plugin"
    # a copy: building in place would leave build/ and *.egg-info in the source tree
    subprocess.run(["cp", "-r", str(PLUGIN), str(build)], check=True)
    pip_install(build, target)
    return target


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = blob_images(400, side=8, seed=2)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=images[:, 0], y=labels)
    return path


@pytest.mark.slow
def test_the_plugins_own_math_tests_pass(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_plugin_objective_trains_evaluates_and_resumes_from_the_cli(
    installed: Path, dataset: Path, tmp_path: Path
) -> None:
    flags = ["--dataset", str(dataset), *TINY, "--objective", "renyi", "--renyi-alpha", "0.3", "--epochs", "2"]
    flags += ["--checkpoint-every", "5"]
    done = vaekit("train", *flags, "--out", "reference", cwd=tmp_path, path=installed)
    assert done.returncode == 0, done.stderr
    stored = json.loads((tmp_path / "reference" / "config.json").read_text())["objective"]
    assert stored == {"name": "renyi", "package": "vaekit-renyi", "alpha": 0.3}
    evaluated = vaekit("evaluate", "--run", "reference", "--k", "4", "--no-quality", cwd=tmp_path, path=installed)
    assert evaluated.returncode == 0, evaluated.stderr
    # killed after a mid-epoch snapshot, then resumed: the weights of the run never interrupted
    train_until_killed([*flags, "--out", "run"], tmp_path, 12, {**os.environ, "PYTHONPATH": str(installed)})
    resumed = vaekit("train", "--resume", "run", "--quiet", cwd=tmp_path, path=installed)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = final_weights(tmp_path / "reference"), final_weights(tmp_path / "run")
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    # without the plug-in, the run says which package it needs, in one line, and writes nothing
    missing = vaekit("evaluate", "--run", "reference", "--k", "4", "--no-quality", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "vaekit: error: --objective 'renyi' comes from the plug-in vaekit-renyi, which is not installed: "
        "pip install vaekit-renyi"
    ]


@pytest.mark.slow
def test_a_plugin_objective_trains_on_two_processes_as_on_one(
    installed: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_distributed import assert_two_ranks_follow_one

    monkeypatch.setenv("PYTHONPATH", str(installed))
    assert_two_ranks_follow_one(dataset, tmp_path, "--objective", "renyi", "--epochs", "1")


BROKEN = {
    "fails to import": ("raise ImportError('no module named tensorflow')", "failed to import"),
    "is not a spec": ("SPECS = ('betatc',)", "is not a vaekit.methods.MethodSpec"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_plugin_is_one_line_and_vaekit_keeps_its_own_methods(case: str, dataset: Path, tmp_path: Path) -> None:
    source, fragment = BROKEN[case]
    package = tmp_path / "broken"
    (package / "vaekit_broken").mkdir(parents=True)
    (package / "vaekit_broken" / "__init__.py").write_text(source + "\n")
    (package / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "vaekit-broken"
        version = "0.1"
        [project.entry-points."vaekit.objectives"]
        broken = "vaekit_broken:SPECS"
        """)
    )
    site = tmp_path / "site"
    pip_install(package, site)
    done = vaekit("train", "--dataset", str(dataset), *TINY, "--epochs", "1", "--out", "run", cwd=tmp_path, path=site)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "vaekit-broken" in line]
    assert len(notes) == 1 and fragment in notes[0], done.stderr
    asked = vaekit("train", "--dataset", str(dataset), "--objective", "broken", "--out", "x", cwd=tmp_path, path=site)
    assert asked.returncode == 2 and not (tmp_path / "x").exists()
    assert "--objective 'broken' is not known" in asked.stderr and fragment in asked.stderr
