"""Every script in examples/ runs as written and prints what docs/guides/your-data.md says it prints (the
figures checked for sense, not to the digit: they depend on the machine's arithmetic)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
EXAMPLES = Path(__file__).parent.parent / "examples"

# script -> patterns its output must contain, in order
EXPECTED = {
    "train_on_tensor.py": [
        r"trained on 1437 digits, tested on 180",
        r"test -ELBO: -?\d+\.\d nats/image \(-log density at the pixel values under a continuous Bernoulli",
        r"4 samples from the prior: \(4, 1, 8, 8\)",
    ],
    "train_on_table.py": [
        r"preset table: mixed likelihood, latent size 8",
        r"test -ELBO: \d+\.\d nats/row \(-log density of each row's observed cells",
        r"sampled mean area +\d+\.\d+, +\d+\.\d+, +\d+\.\d+",
    ],
    "custom_network.py": [
        r"network: nets:small_conv",
        r"without trust_code: refused \(checkpoint .* builds its network with user code \(nets:small_conv\)",
        r"with trust_code=True: loaded, 25969 parameters",
    ],
    "load_and_encode.py": [
        r"codes: \(1500, 8\) for seen digits, \(297, 8\) for new ones",
        r"5-nearest-neighbour accuracy on new digits from 8 latent numbers each: 0\.(\d+)",
    ],
}


def test_every_example_is_checked() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "nets.py")


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_the_example_runs_and_prints_what_the_readme_shows(script: str, tmp_path: Path) -> None:
    # From a folder of its own: the examples write nothing outside their temporary directories.
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:vaekit"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    position = 0
    for pattern in EXPECTED[script]:
        found = re.compile(pattern).search(done.stdout, position)
        assert found is not None, f"{pattern!r} not in:\n{done.stdout}"
        position = found.end()
    assert list(tmp_path.iterdir()) == []
    if script == "load_and_encode.py":  # the codes carry the digits' identity: far above chance (0.1)
        accuracy = float(re.findall(r"each: (0\.\d+)", done.stdout)[0])
        assert accuracy > 0.6
