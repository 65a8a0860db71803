"""Screenshot a sweep's curves in the MLflow UI, reached as a user reaches them.

From the sweep run's page (the last link `kedro run --pipelines=scaling` prints), it follows
the page's "one line per variant" link to the chart view, switches each chosen chart's X axis
to a log scale (MLflow's own chart setting; data size is the step), and saves:

- `<out>/sweep_run.png`: the sweep's run page, its description naming the links;
- `<out>/seeds.png`: the chart view of the page's "one line per seed" link;
- `<out>/curves.png`: the chart view as the link opens it, one line per variant;
- `<out>/<metric>.png` for each `--metric`: that chart alone, with a log X axis.

A chart is chosen by its exact title: `--metric pretrain/caption` never picks a longer name
that contains it, and a metric the view has no chart for fails, naming those it has.

Needs what the lock does not install: `pip install playwright` (any environment), a Chromium
(`apt-get install chromium`), and a running UI (`make ui`):

    python tools/mlflow_screenshot.py --sweep-link <the printed "sweep's run" link> \\
        --metric pretrain/caption --metric sft/average --out docs/images/mlflow
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CURVES_LINK_TEXT = "one line per variant, the seed mean"
SEEDS_LINK_TEXT = "one line per seed"


def on_ui(link: str, ui: str | None) -> str:
    """`link` with its scheme and host replaced by `ui`'s (a UI on another port)."""
    if not ui:
        return link
    target, base = urlsplit(link), urlsplit(ui)
    return urlunsplit((base.scheme, base.netloc, target.path, target.query, target.fragment))


async def _close_assistant(page) -> None:
    close = page.get_by_label("Close", exact=True)  # MLflow 3's assistant side panel
    if await close.count():
        await close.first.click()
        await page.wait_for_timeout(1000)


async def _chart(page, metric: str):
    """The chart card whose title is exactly `metric`."""
    cards = page.get_by_test_id("experiment-view-compare-runs-card")
    titles = []
    for index in range(await cards.count()):
        card = cards.nth(index)
        title = (await card.inner_text()).split("\n", 1)[0].strip()
        titles.append(title)
        if title == metric:
            return card
    raise SystemExit(f"no chart titled {metric!r} in the view; its charts: {', '.join(titles)}")


async def _log_x(page, card) -> None:
    """The chart's own setting: Configure -> X-axis scale -> Log scale."""
    await card.get_by_test_id("experiment-view-compare-runs-card-menu").click()
    await page.get_by_role("menuitem", name="Configure").click()
    await page.wait_for_timeout(1500)
    dialog = page.get_by_role("dialog")
    x_scale = dialog.get_by_role("switch").first  # X-axis scale, above the Y-axis one
    if await x_scale.get_attribute("aria-checked") != "true":
        await x_scale.click()
    await dialog.get_by_test_id("experiment-view-compare-runs-chart-modal-confirm").click()
    await page.wait_for_timeout(1500)


async def shoot(args: argparse.Namespace) -> list[Path]:
    from playwright.async_api import async_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": args.width, "height": args.height})
        await page.goto(on_ui(args.sweep_link, args.ui), wait_until="load")
        await page.wait_for_timeout(6000)
        await _close_assistant(page)
        link = page.get_by_role("link", name=CURVES_LINK_TEXT)
        if not await link.count():
            raise SystemExit(f"the sweep's page has no link {CURVES_LINK_TEXT!r}: is it a "
                             "whole sweep's run (one that ran the fit)?")
        await page.screenshot(path=out / "sweep_run.png")
        written.append(out / "sweep_run.png")
        curves = await link.first.get_attribute("href")
        seeds = await page.get_by_role("link", name=SEEDS_LINK_TEXT).first.get_attribute("href")
        await page.goto(on_ui(seeds, args.ui), wait_until="load")
        await page.wait_for_timeout(8000)
        await _close_assistant(page)
        await page.screenshot(path=out / "seeds.png")
        written.append(out / "seeds.png")
        await page.goto(on_ui(curves, args.ui), wait_until="load")
        await page.wait_for_timeout(8000)
        await _close_assistant(page)
        await page.screenshot(path=out / "curves.png")
        written.append(out / "curves.png")
        for metric in args.metric:
            card = await _chart(page, metric)
            if args.log_x:
                await _log_x(page, card)
            card = await _chart(page, metric)
            path = out / (metric.replace("/", "_") + ".png")
            await card.screenshot(path=path)
            written.append(path)
        await browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep-link", required=True,
                        help="the sweep run's page, as `kedro run --pipelines=scaling` prints it")
    parser.add_argument("--metric", action="append", default=None,
                        help="a chart to save alone, by its exact title (repeat; default: "
                             "pretrain/caption and sft/average)")
    parser.add_argument("--ui", default=None,
                        help="the UI's address when it is not the one in the link, e.g. "
                             "http://127.0.0.1:5001")
    parser.add_argument("--linear-x", dest="log_x", action="store_false",
                        help="keep MLflow's default linear X axis")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--out", default="docs/images/mlflow")
    args = parser.parse_args(argv)
    args.metric = args.metric or ["pretrain/caption", "sft/average"]
    for path in asyncio.run(shoot(args)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
