"""Stop a training process the way a crash does: SIGKILL right after a mid-epoch snapshot, at a
step chosen in advance, with no race against a poll (the process kills itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The child writes snapshots as usual, then SIGKILLs itself right after the first one taken inside
# an epoch at step VAEKIT_KILL_AT_STEP or later.
_KILL_AFTER_SNAPSHOT = """
import os, signal, sys
import vaekit.training.run as run
from vaekit.cli import main
write, at = run.write_checkpoint, int(os.environ["VAEKIT_KILL_AT_STEP"])
where = os.environ.get("VAEKIT_KILL_IN", "")
def write_then_die(path, tensors, config, shape, info, *rest):
    write(path, tensors, config, shape, info, *rest)
    late = info["step"] >= at and info["batch_index"] > 0
    if str(path).endswith("resume.safetensors") and late and where in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
run.write_checkpoint = write_then_die
sys.exit(main(sys.argv[1:]))
"""


def train_until_killed(args: list[str], cwd: Path, step: int, env: dict[str, str] | None = None) -> None:
    """Run `vaekit train ARGS` (with --checkpoint-every small enough to snapshot at `step`) and
    check that it was killed rather than finished."""
    vaekit_until_killed(["train", *args], cwd, step, env)


def vaekit_until_killed(
    args: list[str], cwd: Path, step: int, env: dict[str, str] | None = None, where: str = ""
) -> None:
    """Run `vaekit ARGS` until a run's snapshot at `step` or later, in a run folder whose path
    contains `where` (a study's run), and check that it was killed there rather than finished."""
    environment = {**(env or os.environ), "VAEKIT_KILL_AT_STEP": str(step), "VAEKIT_KILL_IN": where}
    command = [sys.executable, "-c", _KILL_AFTER_SNAPSHOT, *args]
    child = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, (
        f"meant to be killed at step {step}, it ended with {child.returncode}: {child.stderr}"
    )
