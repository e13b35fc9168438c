"""The training loop's pieces, each on its own: one step, a skipped step, best-validation
tracking, early stopping, the epoch report (training/loop.py, state.py, callbacks.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.methods import choice
from vaekit.metrics.elbo import ElboSummary
from vaekit.models import build_run_model
from vaekit.training.callbacks import EarlyStopping, EpochReport
from vaekit.training.loop import Trainer


def tiny_trainer(dataset: Path, **train: object) -> Trainer:
    config = RunConfig(
        data=DataConfig(dataset=str(dataset), val_size=40),
        model=ModelConfig(hidden_sizes=(16,), latent_dim=3),
        train=dataclasses.replace(TrainConfig(epochs=3, batch_size=32, lr=3e-3), **train),
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    return Trainer(build_run_model(config, splits.shape), splits, config, progress=False)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in trainer.model.state_dict().items()}


def never() -> bool:
    return False


def test_one_step_changes_every_weight_and_counts_its_images(blob_npz: Path) -> None:
    trainer = tiny_trainer(blob_npz)
    before = weights(trainer)
    trainer.step(torch.arange(32), never)
    after = weights(trainer)
    assert all(not torch.equal(before[name], after[name]) for name in before)
    assert (trainer.state.step, trainer.state.counted) == (1, 32)
    loss, recon, kl = trainer.state.totals.tolist()
    assert loss == pytest.approx(recon + kl)  # beta 1, no free bits: the loss is the -ELBO


def test_a_non_finite_step_never_reaches_the_weights(blob_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = tiny_trainer(blob_npz)
    monkeypatch.setattr("vaekit.training.loop.to_model_input", lambda batch, *args: torch.full(batch.shape, 0.0).log())
    before = weights(trainer)
    trainer.step(torch.arange(32), never)  # x = -inf everywhere: a non-finite loss
    assert all(torch.equal(before[name], value) for name, value in weights(trainer).items())
    assert (trainer.state.step, trainer.state.counted, trainer.state.skipped_in_row) == (0, 0, 1)


def test_a_stop_request_is_reported_after_the_step(blob_npz: Path) -> None:
    trainer = tiny_trainer(blob_npz)
    assert trainer.step(torch.arange(32), lambda: True) is True
    assert trainer.state.step == 1  # the step in flight finishes: a snapshot never splits an update


def test_the_best_validation_figure_is_tracked_once(blob_npz: Path) -> None:
    state = tiny_trainer(blob_npz).state
    outcomes = [state.record_validation(value) for value in (10.0, 9.0, 9.5, 9.6, 8.0)]
    assert outcomes == [True, True, False, False, True]
    assert (state.best_val, state.epochs_since_best) == (8.0, 0)


def report(epoch: int, epochs_since_best: int) -> EpochReport:
    val = ElboSummary(9.0, 8.0, 1.0, 0.1, 10)
    keep = epochs_since_best == 0
    return EpochReport(epoch, 10 * epoch, 1.0, 9.0, 8.0, 1.0, val, keep, 8.5, epochs_since_best, 1.0, 1.0, 0)


def test_early_stopping_waits_patience_epochs_but_not_past_the_last() -> None:
    said: list[str] = []
    stopping = EarlyStopping(patience=2, epochs=5, say=said.append)
    stopping.on_epoch_end(None, report(2, 1))  # type: ignore[arg-type]
    assert not stopping.triggered
    stopping.on_epoch_end(None, report(3, 2))  # type: ignore[arg-type]
    assert stopping.triggered and "not improved for 2 epoch(s) (best 8.50 nats/image)" in said[0]
    last = EarlyStopping(patience=2, epochs=5, say=said.append)
    last.on_epoch_end(None, report(5, 4))  # type: ignore[arg-type]
    assert not last.triggered  # the run ends anyway: nothing to stop
    off = EarlyStopping(patience=0, epochs=5, say=said.append)
    off.on_epoch_end(None, report(3, 3))  # type: ignore[arg-type]
    assert not off.triggered


def test_an_epoch_report_sums_the_epoch_and_validates(blob_npz: Path) -> None:
    trainer = tiny_trainer(blob_npz)
    started = trainer.train_epoch(never)
    result = trainer.report_epoch(started)
    steps = trainer.state.steps_per_epoch
    assert (result.epoch, result.step, result.skipped_steps) == (1, steps, 0)
    assert result.train_loss == pytest.approx(result.train_recon_nats + result.train_kl_nats)
    assert result.val is not None and result.best_val_nats == result.val.nelbo_nats and result.val.images == 40
    assert result.keep  # 40 validation images cannot choose an epoch: the last one is kept
    assert result.images_per_second > 0


def test_the_epoch_sample_picture_comes_from_the_model_s_own_prior(blob_npz: Path, tmp_path: Path) -> None:
    """With a learned mixture prior far from N(0, I), the picture must be the model's own samples."""
    import numpy as np
    from PIL import Image

    from vaekit.data.transforms import to_unit_range
    from vaekit.training.callbacks import PICTURE_SAMPLES, RunWriter
    from vaekit.training.state import EVAL_SEED_OFFSET
    from vaekit.viz.grid import sample_grid

    config = RunConfig(
        data=DataConfig(dataset=str(blob_npz), val_size=40),
        model=ModelConfig(hidden_sizes=(16,), latent_dim=3),
        prior=choice("prior", "mixture", components=2),
    )
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    model = build_run_model(config, splits.shape)
    with torch.no_grad():
        model.prior.means.fill_(6.0)  # type: ignore[union-attr]  # where N(0, I) never goes
    RunWriter(tmp_path, config, splits, model.device).save_pictures(model, 1)
    written = np.asarray(Image.open(tmp_path / "images" / "samples_epoch001.png"))[::2, ::2]  # drawn 2x
    generator = torch.Generator(model.device).manual_seed(config.train.seed + EVAL_SEED_OFFSET)
    expected = sample_grid(to_unit_range(model.sample(PICTURE_SAMPLES, generator), config.data))[..., 0]
    assert np.array_equal(written, expected)


def test_a_step_budget_ends_the_run_mid_epoch_and_the_cosine_schedule_with_it(blob_npz: Path) -> None:
    from vaekit.training.loop import train_model

    trainer = tiny_trainer(blob_npz, max_steps=3, lr_schedule="cosine")
    steps_per_epoch = trainer.state.steps_per_epoch
    assert steps_per_epoch > 3  # the budget ends the first epoch early
    config = trainer.config
    splits = load_dataset(config.data, progress=False)
    torch.manual_seed(0)
    reports = train_model(build_run_model(config, splits.shape), splits, config, progress=False)
    assert [(r.epoch, r.step) for r in reports] == [(1, 3)]
    unlimited = tiny_trainer(blob_npz, lr_schedule="cosine")
    assert (unlimited.state.total_steps, tiny_trainer(blob_npz, max_steps=3).state.total_steps) == (
        3 * steps_per_epoch,
        3,
    )
