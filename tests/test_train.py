import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FASHION_DIR, needs_fashion
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.data import load_dataset
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.methods import choice
from vaekit.metrics.elbo import elbo_over
from vaekit.models import build_run_model
from vaekit.objectives import lr_factor
from vaekit.training.loop import train_model
from vaekit.training.run import train_run


def tiny_config(dataset: Path, **train: object) -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset=str(dataset), val_size=40),
        model=ModelConfig(architecture="mlp", hidden_sizes=(64,), latent_dim=4),
        train=dataclasses.replace(TrainConfig(epochs=2, batch_size=32, lr=3e-3, eval_batch_size=64), **train),
    )


def test_a_train_step_changes_weights_and_evaluation_does_not(blob_npz: Path) -> None:
    config = tiny_config(blob_npz, epochs=1)
    splits = load_dataset(config.data, progress=False)
    model = build_run_model(config, splits.shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    elbo_over(model, splits.val.images, config.data, batch_size=16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    train_model(model, splits, config, progress=False)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert set(changed) == set(before)


def test_training_lowers_validation_loss_and_is_reproducible(blob_npz: Path) -> None:
    config = tiny_config(blob_npz, epochs=4)
    splits = load_dataset(config.data, progress=False)
    weights = []
    for _ in range(2):
        torch.manual_seed(config.train.seed)
        model = build_run_model(config, splits.shape)
        untrained = elbo_over(model, splits.val.images, config.data, 64).nelbo_nats
        reports = train_model(model, splits, config, progress=False)
        assert reports[-1].val.nelbo_nats < untrained - 50
        assert reports[-1].val.nelbo_nats < reports[0].val.nelbo_nats
        weights.append(model.state_dict())
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), f"{name} differs between identical runs"


def test_warmup_and_cosine_schedule_reach_the_optimizer(blob_npz: Path) -> None:
    config = tiny_config(blob_npz, epochs=2, warmup_steps=1000, lr_schedule="cosine")
    splits = load_dataset(config.data, progress=False)
    model = build_run_model(config, splits.shape)
    reports = train_model(model, splits, config, progress=False)
    steps = reports[-1].step
    assert reports[-1].beta == pytest.approx(steps / 1000)
    assert lr_factor(0, 10, "cosine") == 1.0 and lr_factor(10, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(5, 10, "cosine") == pytest.approx(0.5) and lr_factor(7, 10, "constant") == 1.0


def test_run_folder_contents_and_reload(tmp_path: Path, blob_npz: Path) -> None:
    config = tiny_config(blob_npz)
    result = train_run(config, tmp_path / "run", progress=False)
    run_dir = result.run_dir
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert {"val_nelbo_nats", "val_figure", "train_kl_nats"} <= set(lines[0])
    assert "val_bits_per_dim" not in lines[0]  # a Bernoulli on grey pixels: a cross-entropy, no bits/dim
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_nelbo_nats"] == pytest.approx(summary["test_recon_nats"] + summary["test_kl_nats"])
    for name in [
        "config.json",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "images/recon_epoch002.png",
        "images/samples_epoch002.png",
    ]:
        assert (run_dir / name).stat().st_size > 0, name
    assert not list(run_dir.rglob("*.tmp"))
    # Loading the run back gives the model that produced the summary's figure, bit for bit.
    run = load_run(run_dir)
    splits = run.load_data()
    again = elbo_over(run.model, splits.test.images, run.config.data, config.train.eval_batch_size, seed=0)
    assert again.nelbo_nats == pytest.approx(summary["test_nelbo_nats"], rel=1e-9)
    z = run.model.encode(run.prepare(splits.test.images[:3])).mode()
    assert z.shape == (3, 4) and run.model.decode(z).shape == (3, 1, 28, 28)
    assert run.model.elbo(run.prepare(splits.test.images[:5])).loss.shape == (5,)


def test_existing_run_is_never_overwritten(tmp_path: Path, blob_npz: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(VaekitError, match="--force"):
        train_run(tiny_config(blob_npz), out, progress=False)
    assert (out / "precious.txt").read_text() == "keep me"


def test_bad_input_writes_nothing(tmp_path: Path, blob_npz: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(VaekitError, match="--batch-size 5000 is larger"):
        train_run(tiny_config(blob_npz, batch_size=5000), out, progress=False)
    assert not out.exists()


def test_binarized_gaussian_and_conv_paths_train(tmp_path: Path, blob_npz: Path) -> None:
    base = tiny_config(blob_npz, epochs=1)
    variants = [
        dataclasses.replace(base, data=dataclasses.replace(base.data, binarize=True)),
        dataclasses.replace(
            base,
            data=dataclasses.replace(base.data, pixel_range="symmetric", image_size=16),
            model=ModelConfig(
                architecture="conv",
                conv_channels=(4, 8),
                conv_strides=(2, 2),
                latent_dim=3,
            ),
            likelihood=choice("likelihood", "gaussian", variance="global"),
        ),
    ]
    for i, config in enumerate(variants):
        result = train_run(config, tmp_path / f"run{i}", progress=False)
        assert torch.isfinite(torch.tensor(result.test.nelbo_nats))


@pytest.mark.slow
@needs_fashion
def test_short_real_training_on_fashion_mnist_subset(tmp_path: Path) -> None:
    config = RunConfig(
        data=DataConfig(dataset="fashion-mnist", data_dir=str(FASHION_DIR), train_limit=6000, val_size=1000),
        train=TrainConfig(epochs=2),
    )
    result = train_run(config, tmp_path / "run", progress=False)
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["val_nelbo_nats"] < lines[0]["val_nelbo_nats"] < 400
    assert 200 < result.test.nelbo_nats < 400


def test_early_stopping_waits_patience_epochs_and_stays_stopped(
    blob_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vaekit.metrics.elbo import ElboSummary

    values = iter([10.0, 9.0, 9.5, 9.6, 8.0, 7.0, 6.0, 5.0])
    monkeypatch.setattr("vaekit.training.loop.set_figure", lambda *a, **k: ElboSummary(next(values), 0, 0, 0, 1))
    config = tiny_config(blob_npz, epochs=8, early_stopping=2)
    splits = load_dataset(config.data, progress=False)
    model = build_run_model(config, splits.shape)
    snapshots: list = []
    reports = train_model(model, splits, config, progress=False, checkpointer=lambda t, i: snapshots.append((t, i)))
    assert [r.epoch for r in reports] == [1, 2, 3, 4]  # best at 2, then two epochs without improvement
    assert snapshots[-1][1]["stopped"] is True
    assert train_model(model, splits, config, progress=False, resume=snapshots[-1]) == []  # resuming does not train on


def kept_epoch(run_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoints" / "best.safetensors"), framework="pt") as handle:
        return int(json.loads(handle.metadata()["info"])["epoch"])


@pytest.mark.parametrize(("val_size", "kept"), [(1000, 1), (40, 3)])
def test_validation_chooses_the_kept_epoch_only_when_it_can_tell_epochs_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, val_size: int, kept: int
) -> None:
    """Validation that gets worse after epoch 1: 1,000 images keep epoch 1; 40 keep the last."""
    import numpy as np

    from tests.conftest import blob_images
    from vaekit.metrics.elbo import ElboSummary

    images, labels = blob_images(1400, side=8)
    np.savez(tmp_path / "b.npz", x=images[:, 0], y=labels)
    values = iter([5.0, 9.0, 10.0])
    monkeypatch.setattr("vaekit.training.loop.set_figure", lambda *a, **k: ElboSummary(next(values), 0, 0, 0, 1))
    config = dataclasses.replace(
        tiny_config(tmp_path / "b.npz", epochs=3, batch_size=100),
        data=DataConfig(str(tmp_path / "b.npz"), val_size=val_size),
    )
    result = train_run(config, tmp_path / "run", progress=False)
    assert kept_epoch(result.run_dir) == kept
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert ("too few to tell epochs apart" in summary["kept"]) == (kept == 3)


def test_without_a_validation_set_training_uses_every_image_and_keeps_the_last_epoch(blob_npz: Path) -> None:
    config = dataclasses.replace(tiny_config(blob_npz, epochs=2), data=DataConfig(str(blob_npz), val_size=0))
    splits = load_dataset(config.data, progress=False)
    assert len(splits.val) == 0 and len(splits.train) == 240 - 24  # everything but the test set
    result = train_run(config, blob_npz.parent / "run", progress=False)
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and not [key for key in lines[0] if key.startswith("val_")]
    assert kept_epoch(result.run_dir) == 2
    assert "no validation set" in json.loads((result.run_dir / "summary.json").read_text())["kept"]
    with pytest.raises(VaekitError, match="--early-stopping watches the validation set"):
        dataclasses.replace(config, train=dataclasses.replace(config.train, early_stopping=2))


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_emulates_it_is_announced_with_the_faster_choice(
    tmp_path: Path, blob_npz: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    lines: list[str] = []
    train_run(
        tiny_config(blob_npz, epochs=1, precision="bf16"), tmp_path / "run", progress=False, announce=lines.append
    )
    advice = [line for line in lines if "bf16 is emulated" in line]
    assert len(advice) == (0 if native else 1)
    assert native or "--precision fp32" in advice[0]
    lines.clear()
    train_run(tiny_config(blob_npz, epochs=1), tmp_path / "fp32", progress=False, announce=lines.append)
    assert not [line for line in lines if "emulated" in line]  # fp32 needs no advice


def test_a_pytorch_layout_array_trains_and_the_log_says_how_it_was_read(tmp_path: Path) -> None:
    from tests.conftest import blob_images

    images, _ = blob_images(240, side=28)  # uint8 (N, 1, 28, 28)
    np.save(tmp_path / "images.npy", images.astype(np.float32) / 255.0)  # what np.save(tensor.numpy()) writes
    lines: list[str] = []
    result = train_run(
        tiny_config(tmp_path / "images.npy", epochs=1), tmp_path / "run", progress=False, announce=lines.append
    )
    assert [line for line in lines if "as (N, C, H, W), PyTorch's layout" in line]
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["image_shape"] == [1, 28, 28] and config["data_layout"] == "nchw"
