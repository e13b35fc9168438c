"""The conditional VAE (--conditional): labels reach the encoder and the decoder in every path
(training, ELBO, IWAE, sampling, encoding), each image is given its own label, a model trained on
two easily told classes draws each asked-for class, and bad labels get one-line errors."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, blob_images, playwright_or_skip
from vaekit.cli import main
from vaekit.config import DataConfig, ModelConfig, RunConfig
from vaekit.data.transforms import labelled_batches
from vaekit.errors import VaekitError
from vaekit.loading import load_run
from vaekit.methods import choice
from vaekit.metrics.sample_quality import agreement_per_class
from vaekit.models import build_model
from vaekit.serve.explorer import LatentExplorer, RequestError
from vaekit.serve.server import make_server
from vaekit.training.api import fit

SHAPE = (1, 8, 8)
FAMILIES = [("mlp", 1), ("conv", 1), ("resnet", 1), ("mlp", 2), ("conv", 2)]


def tiny(architecture: str, layers: int, **extra: object) -> torch.nn.Module:
    config = ModelConfig(
        architecture=architecture,
        conditional=True,
        classes=3,
        latent_dim=4,
        hidden_sizes=(16,),
        conv_channels=(4, 8),
        stochastic_layers=layers,
        top_latent_dim=3,
        top_hidden_size=8,
        **extra,  # type: ignore[arg-type]
    )
    torch.manual_seed(0)
    return build_model(config, SHAPE).eval()


def batch(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((n, *SHAPE), generator=generator).bernoulli(generator=generator)
    return x, torch.arange(n) % 3


@pytest.mark.parametrize(("architecture", "layers"), FAMILIES)
def test_importance_weights_give_each_image_its_own_label(architecture: str, layers: int) -> None:
    """K samples of a batch decode sample-major: image b's K decodings must all use y[b]. Checked
    against the same noise fed one image at a time."""
    model = tiny(architecture, layers)
    x, y = batch()
    k = 3
    eps = torch.randn((k, len(x), model.noise_dim), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together, _ = model.log_weights(x, model.encode(x, y), k, eps=eps, y=y)  # (K, B)
        for b in range(len(x)):
            alone, _ = model.log_weights(
                x[b : b + 1], model.encode(x[b : b + 1], y[b : b + 1]), k, eps=eps[:, b : b + 1], y=y[b : b + 1]
            )
            torch.testing.assert_close(together[:, b], alone[:, 0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("architecture", "layers"), FAMILIES)
def test_one_importance_sample_decodes_as_the_elbo_does(architecture: str, layers: int) -> None:
    """The same noise, K = 1: the IWAE path and the ELBO path reach the same z and the same
    log p(x|z, y), so the label took the same route through both."""
    model = tiny(architecture, layers)
    x, y = batch()
    eps = torch.randn((1, len(x), model.noise_dim), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        iwae = model.iwae(x, 1, eps=eps, y=y).recon_nats
        elbo = model.elbo(x, eps=eps[0], y=y).recon_nats
        other = model.elbo(x, eps=eps[0], y=(y + 1) % 3).recon_nats
    torch.testing.assert_close(iwae, elbo, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(elbo, other)


@pytest.mark.parametrize(("architecture", "layers"), FAMILIES)
def test_the_label_changes_what_is_decoded_and_encoded(architecture: str, layers: int) -> None:
    model = tiny(architecture, layers)
    x, _ = batch(4)
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(4))
    zeros, twos = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    with torch.no_grad():
        assert not torch.allclose(model.decode(z, zeros), model.decode(z, twos))
        assert not torch.allclose(model.encode(x, zeros).mu, model.encode(x, twos).mu)


def test_a_conditional_model_needs_labels_and_an_unconditional_one_refuses_them() -> None:
    model = tiny("mlp", 1)
    x, y = batch()
    with pytest.raises(VaekitError, match="conditional"):
        model.elbo(x)
    plain = build_model(ModelConfig(latent_dim=4, hidden_sizes=(16,)), SHAPE)
    with pytest.raises(VaekitError, match="not conditional"):
        plain.elbo(x, y=y)
    with pytest.raises(VaekitError, match="label 7"):
        model.conditioning(np.array([0, 7]), "the data")
    assert plain.conditioning(np.array([0, 7])) is None  # an unconditional model ignores the data's labels


def test_configs_refuse_what_a_label_cannot_reach() -> None:
    with pytest.raises(VaekitError, match="vamp"):
        RunConfig(model=ModelConfig(conditional=True), prior=choice("prior", "vamp"))
    with pytest.raises(VaekitError, match="factory"):
        ModelConfig(conditional=True, architecture="tests.user_networks:small_mlp")
    with pytest.raises(VaekitError, match="classes"):
        build_model(ModelConfig(conditional=True), SHAPE)  # the class count is set from the data


def test_labelled_batches_pair_each_batch_with_its_labels() -> None:
    images = np.arange(7, dtype=np.uint8).reshape(7, 1, 1, 1)
    got = list(labelled_batches(images, np.arange(7) + 10, DataConfig(), 3, torch.device("cpu")))
    assert [(x.flatten() * 255).round().long().tolist() for x, _ in got] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [y.tolist() for _, y in got if y is not None] == [[10, 11, 12], [13, 14, 15], [16]]
    assert [y for _, y in labelled_batches(images, None, DataConfig(), 3, torch.device("cpu"))] == [None] * 3


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional model trained on two easily told classes: a bright square top-left (class
    0) or bottom-right (class 1), on noise."""
    images, quadrants = blob_images(600, side=12, seed=5)
    keep = (quadrants == 0) | (quadrants == 3)
    out = tmp_path_factory.mktemp("cond") / "run"
    fit(
        images[keep],
        (quadrants[keep] == 3).astype(np.int64),
        out=out,
        preset="mlp",
        conditional=True,
        epochs=25,
        batch_size=32,
        latent_dim=2,
        hidden_sizes=(64,),
        lr=3e-3,
        progress=False,
    )
    return out


def bright_quadrant(images: torch.Tensor) -> torch.Tensor:
    """0 where the top-left quarter is brighter than the bottom-right one, else 1; (N,)."""
    half = images.shape[-1] // 2
    top_left = images[..., :half, :half].flatten(1).mean(1)
    bottom_right = images[..., half:, half:].flatten(1).mean(1)
    return (bottom_right > top_left).long()


def test_samples_of_each_label_are_of_that_class(two_class_run: Path) -> None:
    run = load_run(two_class_run)
    assert run.model.classes == 2
    generator = torch.Generator().manual_seed(0)
    for label in (0, 1):
        drawn = run.model.sample(200, generator, y=torch.full((200,), label))
        assert (bright_quadrant(drawn) == label).float().mean() > 0.95


def test_the_cli_draws_a_chosen_class_and_refuses_unknown_ones(
    two_class_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ones.png"
    assert main(["sample", "--run", str(two_class_run), "--label", "1", "-n", "16", "--out", str(out)]) == 0
    assert out.is_file() and "of class 1" in capsys.readouterr().out
    for bad in ("2", "cat", "-1"):
        assert main(["sample", "--run", str(two_class_run), "--label", bad, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert "is not a class of this run" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_evaluate_and_encode_give_each_item_its_label(two_class_run: Path, tmp_path: Path) -> None:
    assert main(["evaluate", "--run", str(two_class_run), "--k", "5"]) == 0
    result = json.loads((two_class_run / "eval.json").read_text())
    assert "given each item's label" in result["figure_description"]
    quality = result["quality"]  # vaekit's classifier on samples drawn for each test image's label
    assert quality["label_agreement"] > 0.95 and len(quality["label_agreement_per_class"]) == 2
    assert min(quality["classifier_test_accuracy_per_class"]) > 0.95
    run = load_run(two_class_run)
    test = run.load_data().test
    out = tmp_path / "codes.npz"
    assert main(["encode", "--run", str(two_class_run), "--out", str(out)]) == 0
    x = run.prepare(test.array)
    expected = run.model.encode(x, torch.from_numpy(test.labels)).mu
    np.testing.assert_allclose(np.load(out)["z_mean"], expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.encode(test.array, labels=test.labels).mean, np.load(out)["z_mean"], atol=1e-6)


def test_an_unconditional_run_refuses_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = blob_images(64, side=8)
    run_dir = tmp_path / "plain"
    fit(images, labels, out=run_dir, preset="mlp", epochs=1, batch_size=16, latent_dim=2, progress=False)
    assert main(["sample", "--run", str(run_dir), "--label", "0", "--out", str(tmp_path / "s.png")]) == 2
    assert "not conditional" in capsys.readouterr().err


def test_conditional_training_without_labels_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, _ = blob_images(64, side=8)
    path = tmp_path / "unlabelled.npy"
    np.save(path, images[:, 0])
    code = main(["train", "--dataset", str(path), "--conditional", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--conditional needs a label for every item" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_the_gallery_draws_a_row_per_class(two_class_run: Path, tmp_path: Path) -> None:
    names = ("samples", "samples-drawn", "reconstructions", "anomalies", "interpolations")
    assert main(["plot", "--run", str(two_class_run), *names, "--out-dir", str(tmp_path)]) == 0
    for name in names:
        assert (tmp_path / f"{name}.png").is_file()
    # samples: 2 rows (one per class) of CLASS_COLUMNS 12x12 images, drawn at scale 2 with padding
    with Image.open(tmp_path / "samples.png") as picture:
        rows = round(picture.height / 2 / (12 + 2))
    assert rows == 2


def test_a_conditional_config_round_trips() -> None:
    config = RunConfig(
        data=DataConfig(), model=ModelConfig(conditional=True, classes=4, class_names=("a", "b", "c", "d"))
    )
    assert RunConfig.from_dict(config.to_dict()) == config


def decoded_picture(answer: dict[str, object]) -> torch.Tensor:
    """The explorer's data-URI image -> a float (1, H, W) picture."""
    data = str(answer["image"]).split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))[None]


def test_the_explorer_decodes_under_the_picked_label(two_class_run: Path) -> None:
    run = load_run(two_class_run)
    explorer = LatentExplorer(run, run.load_data())
    assert explorer.info()["classes"] == ["0", "1"]
    zero = [0.0] * run.model.latent_dim
    for label in (0, 1):
        assert int(bright_quadrant(decoded_picture(explorer.decode(zero, label)))[0]) == label
        sampled = explorer.sample(4, str(label))
        assert all(int(bright_quadrant(decoded_picture({"image": image}))[0]) == label for image in sampled["images"])
    assert explorer.encode(0)["label"] == int(run.load_data().test.labels[0])
    for bad, message in ((None, "give a label"), (2, "label must be"), ("one", "label must be")):
        with pytest.raises(RequestError, match=message):
            explorer.decode(zero, bad)


def test_the_page_offers_a_label_picker(two_class_run: Path) -> None:
    sync_api = playwright_or_skip()
    run = load_run(two_class_run)
    server = make_server(LatentExplorer(run, run.load_data()), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://{host}:{port}/")
            decoded = page.locator("#decoded")
            sync_api.expect(decoded).to_have_attribute("src", re.compile("^data:image/png"))
            sync_api.expect(page.locator("#label option")).to_have_count(2)
            first = decoded.get_attribute("src")
            page.select_option("#label", "1")
            sync_api.expect(decoded).not_to_have_attribute("src", first or "")
            assert int(bright_quadrant(decoded_picture({"image": decoded.get_attribute("src")}))[0]) == 1
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    assert errors == []


def test_agreement_per_class_counts_each_asked_class_apart() -> None:
    asked = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 1, 0])
    agreement = agreement_per_class(predicted, asked, 4)
    assert agreement[:3] == (2 / 3, 1.0, 0.0) and np.isnan(agreement[3])  # class 3 never asked for
