"""Curation of a folder of many small images: peak memory and files/s, streamed vs in memory.

Generates a folder of N small images (32-64 px, PNG and JPEG, distinct random blocks; every
other one with an alt-text sidecar; 1 % exact copies and 1 % near copies, so that dedup has
work), then curates it in a fresh process per size and path, and reports that process's peak
resident memory (VmHWM on Linux, the kernel's high-water mark) and its throughput:

- streamed:  `curate_to_parquet`, what `kedro run --pipelines=curation` runs: the manifest is
  written to Parquet as it is decided;
- in memory: `run_curation`, which returns the manifest as a DataFrame holding every kept image.

Both run the same code up to where the rows go, and both hold the dedup and id indexes
(`index B/record`: O(n), a few dozen bytes a record plus its id). The last line is the figure:
the peak memory at the largest size over the smallest (1.0x: it does not grow with the folder)
and files/s, by the wall clock and per CPU-second (steadier where other work shares the CPUs). Folders are generated once under --dir and reused (a `.complete` marker).

    python benchmarks/curation_many_files.py                  # 10,000 and 100,000 files
    python benchmarks/curation_many_files.py --sizes 2000 --modes streamed --dir /tmp/many
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MODES = ("streamed", "in memory")
# A new layout must not reuse an old folder.
_LAYOUT = "v1: blocks 32-64 px, png/jpeg, sidecars every 2nd, 1% exact, 1% near copies"
_PER_FOLDER = 1000  # files a subfolder, as image datasets are usually sharded


def _blocks(rng: np.random.Generator) -> Image.Image:
    grid = int(rng.choice([8, 12, 16]))
    cells = rng.integers(0, 256, size=(grid, grid, 3), dtype=np.uint8)
    size = (int(rng.integers(32, 65)), int(rng.integers(32, 65)))
    return Image.fromarray(cells).resize(size, Image.Resampling.NEAREST)


def generate_folder(folder: Path, n: int, seed: int = 0) -> dict[str, int]:
    """`n` image files under `folder` (and sidecars); returns what was planted.

    Reused when a finished folder of the same size and layout is there already.
    """
    marker = folder.with_name(f"{folder.name}.complete")  # beside: inside, it would be a record
    expected = f"{_LAYOUT}; n={n}; seed={seed}"
    if marker.exists() and marker.read_text().startswith(expected):
        return json.loads(marker.read_text().split("\n", 1)[1])
    if folder.exists():
        shutil.rmtree(folder)
    marker.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    planted = {"images": n, "exact_copies": 0, "near_copies": 0, "sidecars": 0}
    written: list[Path] = []
    for i in range(n):
        path = folder / f"{i // _PER_FOLDER:04d}" / f"{i:06d}"
        if i % _PER_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if written and roll < 0.01:
            # The bytes of an earlier file: an exact duplicate.
            source = written[int(rng.integers(len(written)))]
            path = path.with_suffix(source.suffix)
            path.write_bytes(source.read_bytes())
            planted["exact_copies"] += 1
        elif written and roll < 0.02:
            # An earlier picture at 95 % size, re-encoded: a near duplicate.
            with Image.open(written[int(rng.integers(len(written)))]) as image:
                smaller = image.convert("RGB").resize(
                    (max(32, round(image.width * 0.95)), max(32, round(image.height * 0.95))),
                    Image.Resampling.LANCZOS)
            path = path.with_suffix(".jpg")
            smaller.save(path, format="JPEG", quality=90)
            planted["near_copies"] += 1
        else:
            image = _blocks(rng)
            if i % 3:
                path = path.with_suffix(".png")
                image.save(path, format="PNG", compress_level=1)
            else:
                path = path.with_suffix(".jpg")
                image.save(path, format="JPEG", quality=90)
        written.append(path)
        if i % 2 == 0:
            path.with_suffix(".txt").write_text(f"picture number {i}, coloured blocks\n")
            planted["sidecars"] += 1
    marker.write_text(expected + "\n" + json.dumps(planted))
    return planted


def curate_in_this_process(mode: str, folder: Path, out: Path, progress: bool) -> dict[str, Any]:
    """One curation of `folder`, measured: what the child process runs."""
    from sail_pipeline.curation import (
        FolderSource,
        curate_to_parquet,
        peak_rss_bytes,
        run_curation,
    )
    from sail_pipeline.schema import CurationFilterParams

    def peak_rss_mib() -> float:  # VmHWM on Linux: this program's own peak, not its parent's
        return peak_rss_bytes() / 2**20

    # The figure is memory that grows with the folder: the imports' share is measured apart.
    settings = CurationFilterParams()
    after_imports = peak_rss_mib()
    sources = [FolderSource(kind="folder", name="many", path=str(folder))]
    started, cpu_started = time.perf_counter(), time.process_time()
    index_bytes: int | None = None
    if mode == "streamed":
        files = curate_to_parquet(sources, out / "manifest.parquet", out / "quarantine.parquet",
                                  settings, progress=progress)
        counts = {k: files.count(k) for k in ("input", "kept", "quarantined")}
        counts |= {k: files.count(k) for k in ("exact_duplicate", "near_duplicate")}
        index_bytes = files.index_bytes
    elif mode == "in memory":
        result = run_curation(sources, settings, progress=progress)
        counts = {k: result.count(k) for k in ("input", "kept", "quarantined")}
        counts |= {k: result.count(k) for k in ("exact_duplicate", "near_duplicate")}
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"mode": mode, **counts, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_rss_mib": peak_rss_mib(),
            "after_imports_mib": after_imports, "index_bytes": index_bytes}


def measure(mode: str, folder: Path, progress: bool = True) -> dict[str, Any]:
    """`curate_in_this_process` in a fresh Python process, so its peak is this run's alone."""
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        out = Path(scratch)
        command = [sys.executable, __file__, "--child", mode, str(folder), str(out)]
        if not progress:
            command.append("--no-progress")
        subprocess.run(command, check=True)
        return json.loads((out / "result.json").read_text())


def row(size: int, result: dict[str, Any]) -> dict[str, Any]:
    index = result["index_bytes"]
    return {"files": size, "path": result["mode"], "records": result["input"],
            "kept": result["kept"], "duplicates": result["exact_duplicate"]
            + result["near_duplicate"], "seconds": round(result["seconds"], 1),
            "files/s": round(result["input"] / result["seconds"]),
            # On a shared machine the wall clock waits for other work; CPU time does not.
            "files/CPU-s": round(result["input"] / result["cpu_seconds"]),
            "peak RSS MiB": round(result["peak_rss_mib"]),
            "after imports MiB": round(result["after_imports_mib"]),
            "index B/record": "-" if index is None else round(index / result["input"])}


def summary(results: dict[tuple[int, str], dict[str, Any]]) -> str:
    """The figure: peak memory at the largest size over the smallest, per path, and files/s."""
    sizes = sorted({size for size, _ in results})
    small, large = sizes[0], sizes[-1]
    parts = []
    for mode in MODES:
        if (small, mode) in results and (large, mode) in results:
            a, b = results[small, mode], results[large, mode]
            parts.append(f"{mode}: peak RSS {b['peak_rss_mib']:.0f} MiB at {large:,} files vs "
                         f"{a['peak_rss_mib']:.0f} MiB at {small:,} = "
                         f"{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x, "
                         f"{b['input'] / b['seconds']:.0f} files/s "
                         f"({b['input'] / b['cpu_seconds']:.0f} per CPU-second)")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the folders are generated and kept (default: a temp dir, "
                             "removed at the end)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FOLDER", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, folder, out = args.child
        result = curate_in_this_process(mode, Path(folder), Path(out), not args.no_progress)
        (Path(out) / "result.json").write_text(json.dumps(result))
        return 0

    # Here, not at the top: the child runs this file too, and _common imports torch.
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import markdown

    base = args.dir or Path(tempfile.mkdtemp(prefix="curation_many_files-"))
    results: dict[tuple[int, str], dict[str, Any]] = {}
    try:
        for size in sorted(args.sizes):
            folder = base / f"n{size}"
            started = time.perf_counter()
            planted = generate_folder(folder, size)
            print(f"{size:,} files in {folder} ({time.perf_counter() - started:.0f}s): "
                  f"{planted}", flush=True)
            for mode in args.modes:
                results[size, mode] = measure(mode, folder, not args.no_progress)
                print(json.dumps({"files": size, **results[size, mode]}), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(markdown([row(size, result) for (size, _), result in results.items()]))
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
