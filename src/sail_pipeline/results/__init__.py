"""The docs site's results pages, written from a run's data: `sail-report --page NAME`.

One module per page. Each takes `Sources` (where the run's datasets are, as the project's
catalog names them, and the run's provenance) and returns a `Page`: its Markdown and the figures
it shows. `write_page` puts both under the docs folder. Every page names the commit, the date,
the machine and the command of the run that wrote its data, and the command that wrote the page;
the site marks a page whose run's code differs from the code being documented
(`docs/hooks/results_freshness.py`).
"""

from __future__ import annotations

from sail_pipeline.results.page import PAGES, Page, Sources, render, write_page

__all__ = ["PAGES", "Page", "Sources", "render", "write_page"]
