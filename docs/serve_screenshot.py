"""Take the docs' screenshot of `vaekit serve`: python docs/serve_screenshot.py RUN [OUT.png]

Serves RUN on a free loopback port, opens the page in headless chromium, moves the most
informative slider and clicks the map, then saves the page.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from vaekit.loading import load_run
from vaekit.serve.explorer import LatentExplorer
from vaekit.serve.server import make_server


def main() -> None:
    run_dir = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "images" / "serve.png"
    run = load_run(run_dir)
    server = make_server(LatentExplorer(run, run.load_data()), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        expect(page.locator("#interpolation")).to_have_attribute("src", re.compile("^data:image/png"))
        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 0.62 * box["width"], box["y"] + 0.7 * box["height"])
        page.wait_for_timeout(300)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    server.shutdown()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
