"""Step time before and after a change, interleaved in one run: `python benchmarks/before_after.py
OLD_TREE [--rounds N]` times objective_cost.py's and posterior_cost.py's steps with the vaekit of
OLD_TREE (a checkout of an earlier commit: `git worktree add /tmp/before COMMIT`) and with this one,
alternately, each in a process of its own, and prints each method's step time after / before.

Used for the plug-in redesign (issue 32), whose target was every step within 3% of before."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBES = {
    "objective": "from objective_cost import measure; print(json.dumps(measure()['step_ms']))",
    "posterior-mlp": "from posterior_cost import measure; print(json.dumps(measure('mlp')['step_ms']))",
    "posterior-conv": "from posterior_cost import measure; print(json.dumps(measure('conv-fashion')['step_ms']))",
}


def timed(tree: Path, probe: str) -> dict[str, float]:
    code = f"import json, sys; sys.path.insert(0, {str(tree / 'benchmarks')!r}); {PROBES[probe]}"
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path, help="a checkout of the earlier commit")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="the later checkout (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(PROBES), default=list(PROBES), help="the probes to run")
    args = parser.parse_args()
    trees = {"before": args.old.resolve(), "after": args.new.resolve()}
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for round_ in range(args.rounds):
        for probe in args.only:
            # interleaved, and in turns first: a slower stretch of the machine, or a second run's
            # warmer (or hotter) processor, touches both sides alike
            sides = list(trees.items()) if round_ % 2 == 0 else list(reversed(trees.items()))
            for side, tree in sides:
                for method, ms in timed(tree, probe).items():
                    times[side].setdefault(f"{probe}:{method}", []).append(ms)
    print(f"{'step':32s} {'before ms':>10s} {'after ms':>10s} {'after/before':>13s}")
    for key in times["before"]:
        before, after = statistics.median(times["before"][key]), statistics.median(times["after"][key])
        print(f"{key:32s} {before:10.2f} {after:10.2f} {after / before:13.3f}")


if __name__ == "__main__":
    main()
