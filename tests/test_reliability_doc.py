"""RELIABILITY.md stays true: every test it names exists, every row names one, and the counts
in its head are the rows' counts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "RELIABILITY.md").read_text()


def _defined() -> set[str]:
    return {m for path in (ROOT / "tests").glob("test_*.py")
            for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}


def _rows() -> list[str]:
    return [line for line in DOC.splitlines() if re.match(r"\| \d+ \|", line)]


def test_every_named_test_exists_and_every_row_names_one():
    defined = _defined()
    rows = _rows()
    for row in rows:
        named = re.findall(r"`(test_\w+?)(?:\.\.\.)?`", row)
        assert named, row
        for name in named:
            assert name.rstrip("_") in defined or any(d.startswith(name.rstrip("_"))
                                                      for d in defined), (name, row[:80])


def test_the_counts_are_the_rows():
    rows = _rows()
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, len(rows) + 1))
    faults = DOC.index("## Faults")
    bad = sum(1 for r in rows if DOC.index(r) < faults)
    head = re.search(r"Kinds tried: (\d+) \(bad inputs (\d+), faults (\d+)\)\. Survived: (\d+)",
                     DOC)
    assert head and [int(x) for x in head.groups()] == [len(rows), bad, len(rows) - bad,
                                                       len(rows)]
    assert bad >= 25
