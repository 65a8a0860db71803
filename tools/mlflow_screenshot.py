"""Screenshot the MLflow UI's chart view of a sweep: its point runs, a score against
`log10_data_size` (the README's figure).

Needs what the lock does not install: `pip install playwright` (any environment) and a
Chromium (`apt-get install chromium`), and a running UI (`make ui`, or `mlflow server
--backend-store-uri sqlite:///$PWD/mlflow.db --port 5000`).

    python tools/mlflow_screenshot.py --parent <sweep run id> --metric sft/average \\
        --out docs/scaling/mlflow_chart.png
"""

from __future__ import annotations

import argparse
import asyncio

PLACEHOLDER = 'metrics.rmse < 1 and params.model = "tree"'  # the UI's empty search box


async def _choose(page, field: str, value: str) -> None:
    box = page.get_by_test_id("experiment-view-compare-runs-config-field").filter(has_text=field)
    await box.locator(".du-bois-light-select-selector").click()
    await page.keyboard.type(value)
    await page.wait_for_timeout(800)
    await page.keyboard.press("Enter")
    await page.wait_for_timeout(800)


async def shoot(args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1600, "height": 1000})
        await page.goto(f"{args.ui}/#/experiments/{args.experiment}/runs?compareRunsMode=CHART",
                        wait_until="load")
        await page.wait_for_timeout(8000)
        assistant = page.get_by_label("Close", exact=True)  # the UI's assistant side panel
        if await assistant.count():
            await assistant.first.click()
        search = page.get_by_placeholder(PLACEHOLDER)
        await search.fill(f"metrics.data_size > 0 and tags.mlflow.parentRunId = '{args.parent}'")
        await search.press("Enter")
        await page.wait_for_timeout(5000)
        # the sweep's run, expanded to its points, every point visible in the charts
        await page.locator('button[data-component-id$="runnamecellrenderer.tsx_46"]').first.click()
        await page.wait_for_timeout(3000)
        await page.get_by_label("Toggle visibility of runs").click()
        await page.get_by_text("Show all runs", exact=True).click()
        await page.wait_for_timeout(2000)
        await page.get_by_role("button", name="Add chart").first.click()
        await page.wait_for_timeout(800)
        await page.get_by_test_id("experiment-view-compare-runs-chart-type-scatter").click()
        await page.wait_for_timeout(2000)
        await _choose(page, "X axis", "log10_data_size")
        await _choose(page, "Y axis", args.metric)
        await page.get_by_role("button", name="Add chart").last.click()
        await page.wait_for_timeout(3000)
        await page.get_by_placeholder("Search metric charts").fill("log10")
        await page.wait_for_timeout(3000)
        await page.screenshot(path=args.out)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", required=True, help="the sweep's (Kedro run's) run id")
    parser.add_argument("--metric", default="sft/average")
    parser.add_argument("--experiment", default="1", help="MLflow experiment id")
    parser.add_argument("--ui", default="http://127.0.0.1:5000")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default="docs/scaling/mlflow_chart.png")
    asyncio.run(shoot(parser.parse_args()))
    print(f"wrote {parser.parse_args().out}")


if __name__ == "__main__":
    main()
