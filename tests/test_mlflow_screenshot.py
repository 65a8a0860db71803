"""tools/mlflow_screenshot.py picks a chart by its exact title and follows links to another UI
address. (The browser itself needs playwright, which the lock leaves out; these parts do not.)"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("mlflow_screenshot",
                                                  ROOT / "tools/mlflow_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Card:
    def __init__(self, text: str) -> None:
        self.text = text

    async def inner_text(self) -> str:
        return self.text


class _Cards:
    def __init__(self, titles: list[str]) -> None:
        self.cards = [_Card(f"{title}\n0.5\n0.4\nStep") for title in titles]

    async def count(self) -> int:
        return len(self.cards)

    def nth(self, index: int) -> _Card:
        return self.cards[index]


class _Page:
    def __init__(self, titles: list[str]) -> None:
        self.titles = titles

    def get_by_test_id(self, test_id: str) -> _Cards:
        assert test_id == "experiment-view-compare-runs-card"
        return _Cards(self.titles)


def test_a_chart_is_chosen_by_its_exact_title():
    tool = _tool()
    page = _Page(["fit/alt_text/pretrain/caption/a", "pretrain/caption_words",
                  "pretrain/caption", "sft/average"])
    card = asyncio.run(tool._chart(page, "pretrain/caption"))
    assert card.text.startswith("pretrain/caption\n")
    with pytest.raises(SystemExit, match=r"no chart titled 'pretrain/cap' in the view; its "
                                         r"charts: fit/alt_text/pretrain/caption/a, "):
        asyncio.run(tool._chart(page, "pretrain/cap"))


def test_links_move_to_the_ui_address_given():
    tool = _tool()
    link = "http://127.0.0.1:5000/#/experiments/2/runs?searchFilter=x&compareRunsMode=CHART"
    assert tool.on_ui(link, "http://127.0.0.1:5055") == (
        "http://127.0.0.1:5055/#/experiments/2/runs?searchFilter=x&compareRunsMode=CHART")
    assert tool.on_ui(link, None) == link
