"""Print a finished run's results: `sail-report`.

With no `--page`, the recipe's tables (stages, scores, details) on stdout. With `--page NAME`,
a whole results page of the docs site (its run's commit, date, machine and command, tables and
figures); with `--out DIR` too, the page is written to `DIR/NAME.md` and its figures beside it
(`make results` writes every page into docs/results/). Paths come from the project's catalog,
so `--env micro` reads what `make micro` wrote. Logs go to stderr: stdout is only results.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

# The registered pages (each module registers its own).
from sail_pipeline.results import benchmarks, experiments, quality, recipe  # noqa: F401
from sail_pipeline.results.page import PAGES, Sources, build, render, write_page


def sources(catalog: Any, env: str | None) -> Sources:
    from sail_pipeline.glue.project_catalog import catalog_path

    def path(name: str) -> Path | None:
        try:
            return catalog_path(catalog, name)
        except KeyError:
            return None

    provenance = (catalog.load("run_provenance")
                  if "run_provenance" in catalog and catalog.exists("run_provenance") else {})
    return Sources(path=path, load=catalog.load, exists=catalog.exists, provenance=provenance,
                   env=env)


def tables(catalog: Any, namespace: str | None = None) -> str:
    """The recipe's tables of a finished run, read through the project's catalog."""
    return recipe.tables(sources(catalog, None), namespace)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="the Kedro environment of the run "
                        "(default: local, i.e. `kedro run`; `micro` for `make micro`)")
    parser.add_argument("--namespace", default=None,
                        help="a variant's (or sweep point's) tables instead of the recipe's")
    parser.add_argument("--page", choices=sorted(PAGES), nargs="+", default=None,
                        metavar="PAGE", help="whole results pages of the docs site instead of "
                        f"the tables: {', '.join(sorted(PAGES))}")
    parser.add_argument("--out", type=Path, default=None,
                        help="with --page: write DIR/PAGE.md and its figures into DIR/PAGE/ "
                        "instead of printing")
    args = parser.parse_args(argv)
    if args.out is not None and args.page is None:
        parser.error("--out needs --page")
    from sail_pipeline.glue.project_catalog import project_catalog

    catalog = project_catalog(args.env)
    if args.page is None:
        print(tables(catalog, args.namespace))
        return
    found = sources(catalog, args.env)
    for name in args.page:
        page = build(name, found)
        # The command that writes this page alone, as the page names it.
        command = shlex.join(["sail-report", *(["--env", args.env] if args.env else []),
                              "--page", name, *(["--out", str(args.out)] if args.out else [])])
        if args.out is None:
            print(render(page, found, command), end="")
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            print(f"wrote {write_page(page, found, args.out, command)}", file=sys.stderr)


if __name__ == "__main__":
    main()
