"""`vaekit serve`: the JSON API against a real server on loopback, its refusals, and the page in a
real headless browser (Playwright driving Debian's chromium)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, blob_images, playwright_or_skip
from vaekit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaekit.loading import load_run
from vaekit.serve.explorer import DISPLAY_SCALE, LatentExplorer
from vaekit.serve.server import make_server
from vaekit.training.run import train_run

SIDE, LATENT = 16, 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    images, labels = blob_images(400, side=SIDE)
    np.savez(root / "blobs.npz", x=images[:, 0], y=labels)
    config = RunConfig(
        data=DataConfig(dataset=str(root / "blobs.npz")),
        model=ModelConfig(hidden_sizes=(32,), latent_dim=LATENT),
        train=TrainConfig(epochs=3, batch_size=32, lr=3e-3),
    )
    result = train_run(config, root / "run", progress=False)
    assert result is not None
    return result.run_dir


@pytest.fixture(scope="module")
def base_url(run_dir: Path) -> Iterator[str]:
    run = load_run(run_dir)
    server = make_server(LatentExplorer(run, run.load_data()), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def call(url: str, payload: Any = None, raw: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def picture(data_uri: str) -> np.ndarray:
    assert data_uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


def test_info_describes_the_latent_space(base_url: str) -> None:
    status, info = call(f"{base_url}/api/info")
    assert status == 200
    assert info["latent_dim"] == LATENT and sorted(info["order"]) == list(range(LATENT))
    kl = info["kl_per_dim_nats"]
    assert [kl[d] for d in info["order"]] == sorted(kl, reverse=True)  # most informative first
    points = np.array(info["map"]["points"])
    assert points.shape == (info["test_images"], 2)
    assert len(info["map"]["labels"]) == len(points)
    # the map's axes are orthonormal directions in latent space
    axes = np.array(info["map"]["axes"])
    assert np.allclose(axes @ axes.T, np.eye(2), atol=1e-4)
    assert "cross-entropy on grey pixels" in info["figure"]  # a Bernoulli on grey blobs: not a likelihood


def test_decode_returns_the_image_of_that_latent_vector(base_url: str) -> None:
    status, zero = call(f"{base_url}/api/decode", {"z": [0.0] * LATENT})
    assert status == 200
    image = picture(zero["image"])
    assert image.shape[:2] == (SIDE * DISPLAY_SCALE, SIDE * DISPLAY_SCALE)
    _, moved = call(f"{base_url}/api/decode", {"z": [2.5, -2.0, 1.0, 0.5]})
    assert np.abs(picture(moved["image"]).astype(int) - image.astype(int)).max() > 0
    _, again = call(f"{base_url}/api/decode", {"z": [0.0] * LATENT})
    assert again["image"] == zero["image"]  # deterministic: the mean of p(x|z)


def test_encode_sample_and_interpolate(base_url: str, run_dir: Path) -> None:
    status, encoded = call(f"{base_url}/api/encode?index=3")
    assert status == 200 and encoded["index"] == 3 and len(encoded["z"]) == LATENT
    run = load_run(run_dir)
    expected = run.model.encode(run.prepare(run.load_data().test.array[3:4])).mu[0]
    assert np.allclose(encoded["z"], expected.tolist(), atol=1e-5)
    status, sampled = call(f"{base_url}/api/sample?n=3")
    assert status == 200 and len(sampled["z"]) == 3 and len(sampled["images"]) == 3
    status, path = call(f"{base_url}/api/interpolate?a=0&b=5&steps=6")
    assert status == 200
    assert picture(path["image"]).shape[1] == DISPLAY_SCALE * (6 * (SIDE + 2) + 2)  # a row of 6 images


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/api/decode", {"z": [0.0, 1.0]}, 400, "list of 4 numbers, got 2"),
        ("/api/decode", {"z": [0.0, float("nan"), 0.0, 0.0]}, 400, "finite"),
        ("/api/decode", {"z": [0.0, 1e9, 0.0, 0.0]}, 400, "within"),
        ("/api/decode", {"z": ["a", 0, 0, 0]}, 400, "numbers only"),
        ("/api/decode", {"z": [True, 0, 0, 0]}, 400, "numbers only"),
        ("/api/decode", {"latent": [0, 0, 0, 0]}, 400, '"z" list'),
        ("/api/decode", [0, 0, 0, 0], 400, '"z" list'),
        ("/api/sample?n=100000", None, 400, "n must be an integer from 1 to 64"),
        ("/api/sample?n=0", None, 400, "n must be"),
        ("/api/sample?n=two", None, 400, "n must be"),
        ("/api/encode?index=-1", None, 400, "index must be"),
        ("/api/encode?index=99999999", None, 400, "index must be"),
        ("/api/encode", None, 400, "missing query parameter index"),
        ("/api/interpolate?a=0&b=1&steps=1000", None, 400, "steps must be"),
        ("/api/nothing", None, 404, "no such page"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(
    base_url: str, path: str, payload: Any, status: int, message: str
) -> None:
    got, body = call(base_url + path, payload)
    assert got == status
    assert message in body["error"]


def test_malformed_bodies_and_wrong_methods(base_url: str) -> None:
    assert call(f"{base_url}/api/decode", raw=b"{not json")[0] == 400
    status, body = call(f"{base_url}/api/decode", raw=b" " * 200_000)
    assert status == 413 and "at most" in body["error"]
    assert call(f"{base_url}/api/decode")[0] == 405  # GET
    assert call(f"{base_url}/api/info", raw=b"{}")[0] == 405  # POST


@pytest.mark.parametrize(
    "target",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/../server.py",
        "//etc/passwd",
        "/app.js/../../cli.py",
    ],
)
def test_no_file_outside_the_static_folder_is_served(base_url: str, target: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    # A raw request: clients would normalise the path before sending it.
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.0 404") or response.startswith(b"HTTP/1.1 404"), response[:80]
    assert b"root:" not in response and b"import" not in response


def test_the_command_binds_loopback_and_says_where(run_dir: Path) -> None:
    env = {**os.environ, "VAEKIT_OFFLINE": "1"}
    command = [sys.executable, "-m", "vaekit", "serve", "--run", str(run_dir), "--port", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        status, info = call(f"http://127.0.0.1:{match.group(1)}/api/info")
        assert status == 200 and info["latent_dim"] == LATENT
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_taken_port_is_a_one_line_error(run_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "vaekit", "serve", "--run", str(run_dir), "--port", str(port), "--device", "cpu"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_page_in_a_headless_browser(base_url: str, tmp_path: Path) -> None:
    sync_api = playwright_or_skip()
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base_url + "/")
        decoded = page.locator("#decoded")
        sync_api.expect(decoded).to_have_attribute("src", re.compile("^data:image/png"))
        sync_api.expect(page.locator("#sliders input")).to_have_count(LATENT)
        first = decoded.get_attribute("src")

        slider = page.locator("#sliders input").first  # the most informative dimension
        slider.focus()
        slider.press("End")  # the keyboard moves it like a user would: to +4
        sync_api.expect(slider).to_have_value("4")
        sync_api.expect(decoded).not_to_have_attribute("src", first or "")
        after_slider = decoded.get_attribute("src")

        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 0.2 * box["width"], box["y"] + 0.8 * box["height"])
        sync_api.expect(decoded).not_to_have_attribute("src", after_slider or "")
        sync_api.expect(slider).not_to_have_value("4")  # the click set every dimension

        sync_api.expect(page.locator("#interpolation")).to_have_attribute("src", re.compile("^data:image/png"))
        page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
        browser.close()
    assert errors == []
    assert Image.open(tmp_path / "serve.png").size[0] >= 1280
