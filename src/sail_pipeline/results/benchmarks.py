"""Results: the benchmarks' figures, as `tools/record_benchmark.py` recorded each run."""

from __future__ import annotations

import json
from pathlib import Path

from sail_pipeline.provenance import describe_machine
from sail_pipeline.results.page import Sources, marker, page


@page("benchmarks", "Results: benchmarks", run_key=None)
def benchmarks_page(sources: Sources) -> tuple[str, list[Path]]:
    folder = sources.path("benchmark_records")
    records = sorted((json.loads(p.read_text()) for p in folder.glob("*.json")),
                     key=lambda r: r["name"]) if folder is not None and folder.is_dir() else []
    body = ["Every performance claim is a ratio measured side by side in one run, by a script "
            "under `benchmarks/` that prints its figure last. "
            "`python tools/record_benchmark.py benchmarks/<script>.py [args]` runs one and "
            "records its output with the commit, date and machine; this page lists the "
            "records. What each script compares: [benchmarks](../guides/benchmarks.md).", ""]
    if not records:
        return "\n".join(body + ["No benchmark has been recorded here yet."]), []
    body += ["| benchmark | its figure (last line printed) | command | commit | date | machine |",
             "|---|---|---|---|---|---|"]
    for record in records:
        run = record["provenance"]
        figure = record["figure"].replace("|", "\\|")
        status = "" if record["returncode"] == 0 else f" (exit {record['returncode']})"
        body.append(f"| {record['name']} | {figure}{status} | `{record['command']}` | "
                    f"`{(run.get('commit') or 'unknown')[:12]}` | {run.get('date')} | "
                    f"{describe_machine(run.get('machine', {}))} |")
    body += ["", "Absolute times count only on a GPU; on a CPU machine read the ratios.", ""]
    body += [marker(record["provenance"]) for record in records]
    return "\n".join(body), []
