"""What every results page shares: where its data are, its header, and writing it out."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sail_pipeline.provenance import describe_machine

# The marker a built page is checked by (docs/hooks/results_freshness.py).
MARKER = "<!-- results-page code_state={code_state} commit={commit} -->"


@dataclass
class Sources:
    """A finished run's datasets by catalog name: `load` and `exists` as the catalog does them,
    `path` the file or folder behind one (None where it names none)."""

    path: Callable[[str], Path | None]
    load: Callable[[str], Any]
    exists: Callable[[str], bool]
    provenance: dict[str, dict[str, Any]]
    env: str | None = None

    @classmethod
    def from_folder(cls, files: dict[str, Path], provenance: dict[str, dict[str, Any]],
                    env: str | None = None) -> Sources:
        """Sources from plain files (JSON loaded as JSON): tests, and runs without Kedro."""

        def load(name: str) -> Any:
            return json.loads(files[name].read_text())

        return cls(path=files.get, load=load,
                   exists=lambda name: name in files and files[name].exists(),
                   provenance=provenance, env=env)


@dataclass
class Page:
    name: str
    title: str
    body: str
    run_key: str | None  # whose provenance: the pipelines of the run that wrote the data
    figures: list[Path] = field(default_factory=list)


@dataclass
class PageSpec:
    title: str
    run_key: str | None
    build: Callable[[Sources], tuple[str, list[Path]]]


PAGES: dict[str, PageSpec] = {}


def page(name: str, title: str, run_key: str | None) -> Callable:
    """Register a page builder: `(sources) -> (markdown body, figures it links by name)`."""

    def register(build: Callable[[Sources], tuple[str, list[Path]]]) -> Callable:
        PAGES[name] = PageSpec(title, run_key, build)
        return build

    return register


def build(name: str, sources: Sources) -> Page:
    if name not in PAGES:
        raise KeyError(f"no results page {name!r}; pages: {', '.join(sorted(PAGES))}")
    spec = PAGES[name]
    body, figures = spec.build(sources)
    return Page(name, spec.title, body, spec.run_key, figures)


def marker(record: dict[str, Any]) -> str:
    """The line the site's freshness hook reads: this run's code state and commit."""
    return MARKER.format(code_state=record.get("code_state", "unknown"),
                         commit=record.get("commit") or "unknown")


def _fmt_commit(record: dict[str, Any]) -> str:
    sha = record.get("commit")
    if not sha:
        return "not recorded (no git checkout)"
    dirty = record.get("uncommitted_changes")
    return f"`{sha[:12]}`" + (" with uncommitted changes to the code" if dirty else "")


def header(page: Page, sources: Sources, page_command: str) -> str:
    if page.run_key is None:  # each row names its run, and carries its own marker
        return "\n".join([f"# {page.title}", "",
                          f"Written by `{page_command}`; each row names its own run.", ""])
    record = sources.provenance.get(page.run_key, {})
    lines = [f"# {page.title}", "", marker(record), ""]
    if not record:
        lines += ["!!! warning \"Where these results came from was not recorded\"",
                  "    The run that wrote these data predates the run record "
                  f"(`run_provenance`, key `{page.run_key}`). Run it again to date them.", ""]
    else:
        lines += ["| the run | |", "|---|---|",
                  f"| commit | {_fmt_commit(record)} |",
                  f"| date | {record.get('date')} |",
                  f"| machine | {describe_machine(record.get('machine', {}))} |",
                  f"| command | `{record.get('command')}` |",
                  f"| page written by | `{page_command}` |", ""]
    if sources.env:
        lines += [f"Environment `{sources.env}`: these are the sizes of `conf/{sources.env}`, "
                  "not the defaults.", ""]
    return "\n".join(lines)


def render(page: Page, sources: Sources, page_command: str) -> str:
    return header(page, sources, page_command) + "\n" + page.body.rstrip() + "\n"


def write_page(page: Page, sources: Sources, out_dir: Path, page_command: str) -> Path:
    """`out_dir/<name>.md`, and its figures under `out_dir/<name>/`; returns the page's path."""
    figure_dir = out_dir / page.name
    if figure_dir.exists():
        shutil.rmtree(figure_dir)
    text = render(page, sources, page_command)
    if page.figures:
        figure_dir.mkdir(parents=True)
        for figure in page.figures:
            shutil.copyfile(figure, figure_dir / figure.name)
            text = text.replace(f"]({figure.as_posix()})", f"]({page.name}/{figure.name})")
    out = out_dir / f"{page.name}.md"
    out.write_text(text)
    return out


def image(path: Path, caption: str) -> str:
    """A figure; `write_page` rewrites its link to the copy beside the page."""
    return f"![{caption}]({path.as_posix()})"


def markdown_table(frame: Any, floats: str = "{:.3g}") -> str:
    """A DataFrame as a Markdown table (no tabulate dependency)."""
    columns = list(frame.columns)
    rows = ["| " + " | ".join(str(c) for c in columns) + " |",
            "|" + "---|" * len(columns)]
    for values in frame.itertuples(index=False):
        cells = []
        for value in values:
            if isinstance(value, float):
                cells.append("–" if value != value else floats.format(value))
            else:
                cells.append(str(value))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
