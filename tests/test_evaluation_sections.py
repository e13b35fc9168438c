"""`vaekit evaluate` as sections (metrics/evaluation.py): each part of a run contributes its
figures and its table rows, and eval.json keeps the top-level keys its readers know."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_legacy_runs import legacy  # noqa: F401  # the fixture: old run folders, copied
from vaekit.loading import load_run
from vaekit.metrics.evaluation import (
    BoundSection,
    ColumnsSection,
    LatentSection,
    evaluate_run,
    format_table,
    sections_of,
)

# What every reader of eval.json (the report, scripts, the docs' examples) reads at its top level.
TOP_LEVEL = {"figure", "elbo_recon_nats", "elbo_kl_nats", "iwae_k", "iwae_standard_error_nats", "latent_dim"}


def evaluated(name: str) -> dict:
    run = load_run(name)
    return evaluate_run(run, run.load_data(), k=2, quality=False, limit=40)


@pytest.mark.parametrize("name", ["gaussian", "ladder-pixel", "vq"])
def test_the_table_is_each_sections_rows_in_order(name: str, legacy: Path) -> None:  # noqa: F811
    result = evaluated(name)
    assert set(result) >= TOP_LEVEL
    sections = sections_of(result)
    assert [type(s) for s in sections[:3]] == [BoundSection, ColumnsSection, LatentSection]
    assert all(s.key is None or s.key in result for s in sections)  # each keyed one has its place, None or not
    shown = [s.rows(result if s.key is None else result[s.key]) for s in sections if s.key is None or result[s.key]]
    lines = format_table(result).splitlines()
    where = [
        next(i for i, line in enumerate(lines) if line.strip().startswith(rows[0][0].strip())) for rows in shown if rows
    ]
    assert where == sorted(where)
    header = [line for line in lines[1:] if line.startswith(("  posterior:", "  figures:"))]
    assert len(lines) == 1 + len(header) + sum(map(len, shown))  # every row is a section's, none twice


def test_each_part_of_a_run_gives_its_own_rows(legacy: Path) -> None:  # noqa: F811
    gaussian, ladder, vq = (format_table(evaluated(name)) for name in ("gaussian", "ladder-pixel", "vq"))
    assert "active units " in gaussian and "active units, z1" not in gaussian
    assert "active units, z2" in ladder and "active units, z1" in ladder  # a ladder counts each layer
    # discrete codes have no active units: the VQ family's own section says how the codes are used
    assert "active units" not in vq and "codebook" in vq.lower()
