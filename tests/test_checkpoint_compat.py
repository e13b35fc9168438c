"""Checkpoints written before the module regrouping (issue 13) still load, and the models they
rebuild compute what the old code computed (tests/data/old-layout/make_fixtures.py wrote both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vaekit.checkpoint import load_checkpoint
from vaekit.loading import load_run

OLD = Path(__file__).parent / "data" / "old-layout"
EXPECTED = json.loads((OLD / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_checkpoint_loads_and_computes_what_it_did(name: str) -> None:
    model, _, info = load_checkpoint(OLD / f"{name}.safetensors")
    model.eval()
    expected = EXPECTED[name]
    with torch.no_grad():
        terms = model.elbo(torch.tensor(expected["x"]), eps=torch.tensor(expected["eps"]))
        mean = model.mean_image(model.decode(torch.tensor(expected["z"])))
    assert info["epoch"] == 1
    assert torch.allclose(terms.nelbo_nats, torch.tensor(expected["nelbo_nats"]), rtol=1e-5, atol=1e-4)
    assert torch.allclose(mean.flatten(), torch.tensor(expected["mean_image"]), rtol=1e-5, atol=1e-5)


def test_an_old_checkpoint_file_loads_as_a_run() -> None:
    run = load_run(OLD / "conv-ladder-pixelcontext.safetensors")
    assert run.model.image_shape == (1, 8, 8)
    assert run.config.model.stochastic_layers == 2
