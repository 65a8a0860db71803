"""Run one benchmark and record what it printed, with where it ran: the benchmarks results page.

    python tools/record_benchmark.py benchmarks/packing_efficiency.py [its arguments]

The script's output passes through as it runs. The record (its last printed line, which by the
benchmarks' convention is the figure; the command; the exit status; the commit, date and
machine) goes to the catalog's `benchmark_records` folder, one JSON per script, and
`sail-report --page benchmarks` lists them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", help="a benchmark script, e.g. benchmarks/sweep_reuse.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    parser.add_argument("--env", default=None, help="the Kedro environment whose data folder "
                        "keeps the record (default: data/)")
    options = parser.parse_args()
    script = Path(options.script)
    if not script.is_file():
        parser.error(f"no benchmark script {script}")

    from sail_pipeline import provenance
    from sail_pipeline.glue.project_catalog import catalog_path, project_catalog

    command = ["python", script.as_posix(), *options.args]
    lines: list[str] = []
    process = subprocess.Popen([sys.executable, str(script), *options.args],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    returncode = process.wait()
    printed = [line for line in lines if line.strip()]
    folder = catalog_path(project_catalog(options.env), "benchmark_records")
    folder.mkdir(parents=True, exist_ok=True)
    record = {"name": script.stem, "command": shlex.join(command), "returncode": returncode,
              "figure": printed[-1].strip() if printed else "(printed nothing)",
              "output_tail": printed[-40:], "provenance": provenance.record(command)}
    out = folder / f"{script.stem}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {out}", file=sys.stderr)
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())
