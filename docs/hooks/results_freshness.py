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
    found = MARKER.search(markdown)
    if found is None:
        return markdown
    run_state, commit = found[1], found[2]
    current = _current()
    if current is None or run_state == current:
        return markdown
    short = commit[:12] if commit != "unknown" else "an unrecorded commit"
    note = ("!!! warning \"Older than the code\"\n"
            f"    These results come from a run at {short}. The code that produces them has "
            "changed since (its digest differs: "
            f"`{run_state}` then, `{current}` now), so a run today may give other numbers. "
            "Rerun the experiment, then `make results`.\n\n")
    return markdown[:found.end()] + "\n\n" + note + markdown[found.end():]
