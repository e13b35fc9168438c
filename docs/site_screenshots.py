"""Screenshots of the built documentation site: python docs/site_screenshots.py [SITE] [OUT_DIR]

Serves SITE (default: site/, from `make docs`) on a free loopback port, opens three pages in
headless Chromium (the home page with its navigation, a results table, an API page), checks that
each rendered without console errors, and saves them as PNGs in OUT_DIR (default: site-shots/).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


PAGES = {
    "home": "",
    "results": "results/#a-the-tutorials-convention-cross-entropy-on-grey-pixels",  # the presets' table
    "api-training": "reference/training/",
    "objectives": "concepts/objectives/",
    "disentanglement": "concepts/disentanglement/",
}


def main() -> None:
    site = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("site")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("site-shots")
    if not (site / "index.html").is_file():
        sys.exit(f"{site} has no index.html: build the site first (make docs)")
    out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        for name, path in PAGES.items():
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"wrote {out / f'{name}.png'}: {page.title()}")
        browser.close()
    server.shutdown()
    if errors:
        sys.exit("console errors: " + "; ".join(errors))


if __name__ == "__main__":
    main()
