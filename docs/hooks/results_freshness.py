"""mkdocs hook: a results page whose run's code differs from the code being documented says so.

Each results page (`sail-report --page NAME --out docs/results`) carries a marker with the
run's `code_state` (`sail_pipeline.provenance`). When the site is built, the checkout's own code
state is computed once and every page whose marker differs gets a warning at its top. This is
what keeps committed results from passing as current after the code moved on.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

MARKER = re.compile(r"<!-- results-page code_state=(\S+) commit=(\S+) -->")


@cache
def _current() -> str | None:
    try:
        from sail_pipeline.provenance import code_state
    except ImportError:  # the site built without the package installed
        return None
    return code_state()


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """A page's runs (one marker each: the page's run, or each benchmark's) against the code."""
    runs = MARKER.findall(markdown)
    current = _current()
    if not runs or current is None:
        return markdown
    stale = sorted({(commit[:12] if commit != "unknown" else "an unrecorded commit", state)
                    for state, commit in runs if state != current})
    if not stale:
        return markdown
    which = ("These results come from a run" if len(runs) == 1 else
             f"{len(stale)} of the {len(runs)} runs on this page come from runs")
    at = ", ".join(f"{commit} (code `{state}`)" for commit, state in stale)
    note = ("!!! warning \"Older than the code\"\n"
            f"    {which} at {at}. The code that produces them has changed since (its digest "
            f"is `{current}` now), so a run today may give other numbers. Rerun the "
            "experiment, then `make results`.\n\n")
    heading = re.search(r"^# .*\n", markdown, re.M)
    cut = heading.end() if heading else 0
    return markdown[:cut] + "\n" + note + markdown[cut:]
