"""Open the built docs site in headless Chromium: each page renders, with its images and a
working navigation, and a screenshot of each.

    python tools/docs_screenshots.py [--site site] [--out screenshots] [PAGE ...]

PAGE is a page's path in the site (default: the landing page, a guide and a results page).
The site is served over HTTP as `mkdocs serve` would; Chromium (Debian's `chromium` package)
loads each page, runs its scripts, and hands back the rendered DOM and a PNG. A page fails when
a navigation link or an image it shows points at nothing the site has, or when its screenshot
is blank. Exit status 1 on any failure, naming it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

DEFAULT_PAGES = ("index.html", "guides/scaling/index.html", "results/recipe/index.html")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _chromium(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=4000", *args],
                          capture_output=True, text=True, timeout=120)


@functools.cache
def _server(site: Path) -> str:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _exists(site: Path, base: str, page_url: str, link: str) -> bool:
    url = urlparse(urljoin(page_url, link))
    if url.netloc and not url.geturl().startswith(base) or link.startswith(("#", "mailto:")):
        return True  # another site, or a place on this page
    path = site / url.path.lstrip("/")
    return path.is_file() or (path / "index.html").is_file()


def check_page(site: Path, page: str, out: Path, chromium: str) -> dict:
    """Render `page`; returns its navigation links, images, screenshot and what failed."""
    base = _server(site)
    url = base + page
    dom = _chromium(chromium, "--dump-dom", url).stdout
    nav = re.findall(r'<a[^>]*class="md-nav__link[^"]*"[^>]*href="([^"]+)"', dom)
    nav += re.findall(r'<a[^>]*href="([^"]+)"[^>]*class="md-nav__link', dom)
    images = re.findall(r'<img[^>]*src="([^"]+)"', dom)
    failures = []
    if "md-header" not in dom:
        failures.append("not rendered by the Material theme (no header)")
    if len(set(nav)) < 5:
        failures.append(f"{len(set(nav))} navigation links")
    failures += [f"navigation link to nothing: {link}" for link in sorted(set(nav))
                 if not _exists(site, base, url, link)]
    failures += [f"image not found: {src}" for src in images if not _exists(site, base, url, src)]
    shot = out / (page.replace("/index.html", "").replace("/", "_").replace(".html", "")
                  or "index")
    shot = shot.with_suffix(".png")
    _chromium(chromium, f"--screenshot={shot}", "--window-size=1280,1400", url)
    if not shot.exists():
        failures.append("no screenshot")
    else:
        from PIL import Image

        with Image.open(shot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        if colours is not None and len(colours) < 16:
            failures.append(f"a blank screenshot ({len(colours)} colours)")
    return {"page": page, "nav_links": len(set(nav)), "images": images, "screenshot": shot,
            "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="*", default=list(DEFAULT_PAGES))
    parser.add_argument("--site", type=Path, default=Path("site"),
                        help="the built site (`make docs-build`)")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        parser.error("no Chromium found (apt-get install chromium)")
    if not (args.site / "index.html").exists():
        parser.error(f"{args.site} holds no built site: run `make docs-build`")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for page in args.pages:
        result = check_page(args.site.resolve(), page, args.out, chromium)
        status = "; ".join(result["failures"]) or "ok"
        print(f"{page}: {result['nav_links']} navigation links, {len(result['images'])} images, "
              f"{result['screenshot']}: {status}")
        failed |= bool(result["failures"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
