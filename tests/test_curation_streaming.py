"""Curation streamed to Parquet (issue #25, big folders): the same rows as in memory, files that
appear whole or not at all, compact dedup indexes, a folder listing in pathlib's order, and the
benchmark's core at a tiny size (its figures come from running it, never from a test)."""

from __future__ import annotations

import importlib.util
import io
import os
import random
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rich.console import Console

from sail_pipeline.curation import (
    MANIFEST_COLUMNS,
    CurationFilterParams,
    CurationParams,
    FolderSource,
    curate_to_parquet,
    dedup,
    funnel,
    hamming,
    run_curation,
    sources,
)
from sail_pipeline.curation.formats import readable_extensions
from sail_pipeline.curation.reasons import Reason
from sail_pipeline.glue.io import ParquetTableDataset
from sail_pipeline.pipelines.curation import nodes
from sail_pipeline.schema import ExecutorParams
from tests.curation_fixtures import (
    blocks,
    build_messy_folder,
    build_other_sources,
    encoded,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Every source kind, messy, and one folder twice (exact duplicates across sources)."""
    root = tmp_path_factory.mktemp("streaming")
    build_messy_folder(root / "messy")
    others, _ = build_other_sources(root)
    return [FolderSource(kind="folder", name="messy", path=str(root / "messy")), *others,
            FolderSource(kind="folder", name="again", path=str(root / "messy"))]


# --- streamed == in memory -------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [4096, 5])  # 5: ids and duplicates across chunks
def test_streamed_curation_equals_the_in_memory_one(tmp_path, every_kind, small_world,
                                                    chunk_size):
    settings = CurationFilterParams(near_duplicate_max_distance=6)
    executor = ExecutorParams(chunk_size=chunk_size)
    scenes = small_world.scenes
    memory = run_curation(every_kind, settings, world_scenes=scenes, progress=False,
                          executor=executor)
    files = curate_to_parquet(every_kind, tmp_path / "out" / "manifest.parquet",
                              tmp_path / "out" / "quarantine.parquet", settings,
                              world_scenes=scenes, progress=False, executor=executor)

    manifest, quarantine = files.manifest.read(), files.quarantine.read()
    pd.testing.assert_frame_equal(manifest, memory.manifest)  # images byte for byte, in order
    pd.testing.assert_frame_equal(quarantine, memory.quarantine)
    pd.testing.assert_frame_equal(files.funnel, memory.funnel)
    assert (len(files.manifest), len(files.quarantine)) == (len(memory.manifest),
                                                            len(memory.quarantine))
    # What the nodes after curation load is what pandas wrote for them before.
    memory.manifest.to_parquet(tmp_path / "pandas.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pandas.parquet"), manifest)
    # The fixtures do exercise every decision that depends on earlier records.
    assert {"exact_duplicate", "near_duplicate", "duplicate_id"} <= set(quarantine["reason"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.parquet",
                                                                    "quarantine.parquet"]
    assert 0 < files.index_bytes < 1_000_000


def test_row_groups_follow_the_flush_size(tmp_path, monkeypatch, every_kind, small_world):
    # A run holds at most FLUSH_BYTES of kept images before they go to the file.
    monkeypatch.setattr(funnel, "FLUSH_BYTES", 1)
    files = curate_to_parquet(every_kind[:1], tmp_path / "m.parquet", tmp_path / "q.parquet",
                              progress=False)
    assert pq.ParquetFile(files.manifest.path).metadata.num_row_groups == len(files.manifest)


def test_streamed_files_keep_their_schema_when_empty_or_all_null(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encoded(blocks(1, (64, 64)), "PNG"))  # no sidecar
    files = curate_to_parquet([FolderSource(kind="folder", name="p", path=str(folder))],
                              tmp_path / "m.parquet", tmp_path / "q.parquet", progress=False)
    schema = pq.read_schema(files.manifest.path)
    assert schema.field("alt_text").type == pa.large_string()  # not `null`, as pandas types it
    assert files.manifest.read()["alt_text"].isna().all()
    # No quarantined record: an empty table with its columns, not a missing file.
    assert len(files.quarantine) == 0
    assert list(files.quarantine.read().columns) == ["id", "source", "source_id", "reason",
                                                     "detail"]


def test_a_failed_run_leaves_no_file(tmp_path, monkeypatch, every_kind):
    calls = []

    def failing(batch, settings):
        calls.append(len(batch))
        if len(calls) > 1:
            raise RuntimeError("worker died")
        return funnel.check_batch(batch, settings)

    monkeypatch.setattr(funnel, "check_batch", failing)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="worker died"):
        curate_to_parquet(every_kind[:1], out / "m.parquet", out / "q.parquet", progress=False,
                          executor=ExecutorParams(chunk_size=3))
    assert list(out.iterdir()) == []  # neither the files nor their partial parts


# --- compact indexes -------------------------------------------------------------------------


def test_key_index_matches_a_dict_across_merges():
    rng = random.Random(0)
    index, reference = dedup.KeyIndex(), {}
    for position in range(20_000):  # many merges of the newest keys into the sorted run
        key = rng.randrange(3000) if position % 3 else rng.getrandbits(64)
        index.add(key, position)
        reference.setdefault(key, []).append(position)
        if position % 997 == 996:
            keys = sorted(reference)
            for probe in rng.sample(keys, 20) + [rng.getrandbits(64)]:
                assert index.find(probe) == reference.get(probe, [])
            probes = np.array(rng.sample(keys, 30), dtype=np.uint64)
            assert sorted(index.find_many(probes).tolist()) == \
                sorted(p for k in probes.tolist() for p in reference[k])
    assert len(index) == 20_000


@pytest.mark.parametrize("max_distance", [0, 6])
def test_near_index_matches_brute_force_past_its_merges(max_distance):
    rng = random.Random(max_distance)
    hashes = [rng.getrandbits(64) for _ in range(2500)]
    for _ in range(2500):
        flips = rng.sample(range(64), rng.randint(0, max_distance + 2))
        hashes.append(rng.choice(hashes) ^ sum(1 << bit for bit in flips))
    index = dedup.NearHashIndex(max_distance)
    kept: list[int] = []
    matched = 0
    for value in hashes:
        near = [(hamming(value, kept[k]), k) for k in range(len(kept))
                if hamming(value, kept[k]) <= max_distance]
        assert index.match(value) == (min(near)[::-1] if near else None)
        if near:
            matched += 1
        else:
            assert index.add(value) == len(kept)
            kept.append(value)
    assert matched > 100 and len(kept) > 2 * dedup._TAIL_MIN


def test_exact_index_compares_whole_digests():
    index = dedup.ExactHashIndex()
    shared = "ab" * 8  # the first 8 bytes, the index's key, are the same for both
    first, second = shared + "00" * 24, shared + "11" * 24
    assert index.add(first) == 0
    assert index.match(second) is None
    assert index.add(second) == 1
    assert (index.match(first), index.match(second)) == (0, 1)
    assert index.add(first) == 2 and index.match(first) == 0  # the earliest stays


def test_seen_ids_count_repeats_exactly_even_when_every_hash_collides(monkeypatch):
    monkeypatch.setattr(dedup, "_MASK64", 0)  # every id gets key 0: only the strings differ
    seen, counts = dedup.SeenIds(), Counter()
    ids = [f"s:{i % 700}" for i in range(2000)] + ["s:\ud800", "s:\ud800", "é:1"]
    for record_id in ids:
        position, before = seen.see(record_id)
        assert before == counts[record_id] and seen.pool[position] == record_id
        counts[record_id] += 1
    assert len(seen.pool) == len(counts)


def test_index_memory_per_record_is_small():
    # What the run holds for each record it keeps (a few dozen bytes of each index, and the
    # id): measured on the arrays themselves, so it is exact, not a timing.
    n = 20_000
    rng = random.Random(1)
    seen, exact, near = dedup.SeenIds(), dedup.ExactHashIndex(), dedup.NearHashIndex(6)
    for i in range(n):
        seen.see(f"photos:{i // 1000:04d}/{i:06d}.jpg")
        exact.add(f"{rng.getrandbits(256):064x}")
        near.add(rng.getrandbits(64))
    per_record = (seen.nbytes + exact.nbytes + near.nbytes) / n
    assert per_record < 300, per_record  # Python dicts and strs took ~900


# --- the folder listing ----------------------------------------------------------------------


def _pathlib_records(spec: FolderSource) -> list[tuple]:
    """read_folder as it was written with pathlib (sorted Paths, a set of sidecars)."""
    root = Path(spec.path)
    extensions = ({e.lower() for e in spec.extensions} if spec.extensions is not None
                  else readable_extensions())
    candidates = root.rglob("*") if spec.recursive else root.glob("*")
    files = sorted(p for p in candidates if not p.is_dir())
    sidecars = {p.with_suffix(spec.alt_text_suffix) for p in files
                if p.suffix.lower() in extensions}
    out = []
    for file in files:
        source_id = file.relative_to(root).as_posix()
        if file.suffix.lower() in extensions:
            out.append((source_id, "image"))
        elif file in sidecars:
            continue
        elif file.suffix == spec.alt_text_suffix:
            out.append((source_id, "orphan sidecar"))
        elif spec.extensions is None and sources._pillow_reads(file):
            out.append((source_id, "image"))
        else:
            out.append((source_id, "unsupported"))
    return out


def _kind(record) -> str:
    if record.error is None:
        return "image"
    return "orphan sidecar" if "sidecar" in record.error.detail else "unsupported"


def test_folder_listing_keeps_pathlibs_order_and_sidecars(tmp_path):
    root = tmp_path / "tree"
    png = encoded(Image.new("RGB", (40, 40)), "PNG")
    names = ["a-b.png", "a/b.png", "a.png", "a.txt", "B.JPG", "B.txt", "c.txt", ".hidden.png",
             ".txt", "d.tar.gz", "e", "f.dat", "g.jpeg.txt", "g.jpeg", "real/r.png",
             "real/r.txt", "sub/x.png", "sub/x.txt", "sub.png", "sub-1/x.png", "é.png",
             "with space.png", "h.x/inner.png", "h.png", "h.txt", "h.caption", "i.PNG", "i.txt",
             "j.png.txt", "k.", "k..txt", "l.txt.png", "l.txt.txt", "m/n/o/p.png", "m/n.png"]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = name.lower().endswith((".png", ".jpg", ".jpeg", ".dat")) or name == "e"
        path.write_bytes(png if image else b"alt text")
    os.symlink(root / "real", root / "link")  # a linked folder: not entered
    os.symlink(root / "nowhere.png", root / "dangling.png")  # counts, and ends missing
    (root / "empty").mkdir()
    for recursive in (True, False):
        for extensions in (None, [".png"], [".PNG", ".jpg", ""]):
            for suffix in (".txt", ".caption", ""):
                spec = FolderSource(kind="folder", name="t", path=str(root), recursive=recursive,
                                    extensions=extensions, alt_text_suffix=suffix)
                totals: list[tuple[str, int]] = []
                records = list(sources.read_folder(
                    spec, lambda s, n, totals=totals: totals.append((s, n))))
                assert [(r.source_id, _kind(r)) for r in records] == _pathlib_records(spec), \
                    (recursive, extensions, suffix)
                assert totals == [("t", len(records))]
    spec = FolderSource(kind="folder", name="t", path=str(root))
    by_id = {r.source_id: r for r in sources.read_folder(spec)}
    assert by_id["B.JPG"].alt_text_raw == b"alt text" and "B.txt" not in by_id
    assert by_id["a-b.png"].path == str(root / "a-b.png")


# --- progress ---------------------------------------------------------------------------------


def test_progress_shows_the_total_records_per_second_and_peak_memory(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.png").write_bytes(encoded(blocks(i, (48, 48)), "PNG"))
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    monkeypatch.setattr(funnel, "_progress", partial(funnel._progress, console=console))
    result = run_curation([FolderSource(kind="folder", name="photos", path=str(folder))])
    shown = buffer.getvalue()
    assert result.count("input") == 12
    assert "12/12" in shown  # the folder's total, known once it is listed
    assert "records/s" in shown and "peak RSS" in shown and "MiB" in shown


# --- Kedro: the dataset and the node ---------------------------------------------------------


def test_parquet_table_dataset_moves_a_streamed_file_and_loads_a_frame(tmp_path):
    folder = tmp_path / "photos"
    build_messy_folder(folder)
    files = curate_to_parquet([FolderSource(kind="folder", name="m", path=str(folder))],
                              tmp_path / "work" / "m.parquet", tmp_path / "work" / "q.parquet",
                              progress=False)
    expected = files.manifest.read()
    dataset = ParquetTableDataset(str(tmp_path / "data" / "manifest.parquet"))
    dataset.save(files.manifest)
    assert not files.manifest.path.exists()  # moved, not copied
    pd.testing.assert_frame_equal(dataset.load(), expected)
    dataset.save(expected.head(2))  # a DataFrame still saves as one
    pd.testing.assert_frame_equal(dataset.load(), expected.head(2))
    assert list(dataset.load().columns) == MANIFEST_COLUMNS


def test_the_node_streams_into_its_working_folder(tmp_path):
    folder = tmp_path / "photos"
    expected = build_messy_folder(folder)
    params = CurationParams.model_validate(
        {"sources": [{"kind": "folder", "name": "p", "path": str(folder)}]})
    manifest, quarantine, table, _ = nodes.curate(params, None, str(tmp_path / "work"))
    assert len(manifest) + len(quarantine) == len(expected)
    assert manifest.path.parent == tmp_path / "work"  # for the catalog to move into place
    assert table["count"][table["reason"] == Reason.EXACT_DUPLICATE.value].item() == 1


# --- the benchmark ---------------------------------------------------------------------------


def _benchmark():
    path = ROOT / "benchmarks" / "curation_many_files.py"
    spec = importlib.util.spec_from_file_location("curation_many_files", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    bench = _benchmark()
    assert bench.main(["--sizes", "200", "--dir", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = {line.split("|")[2].strip(): [cell.strip() for cell in line.split("|")]
             for line in lines if line.startswith("| 200 |")}
    assert set(table) == {"streamed", "in memory"}
    assert table["streamed"][3:6] == table["in memory"][3:6]  # records, kept, duplicates
    assert table["streamed"][3] == "200"
    assert "streamed: peak RSS" in lines[-1] and "in memory: peak RSS" in lines[-1]
    assert "files/s" in lines[-1] and "per CPU-second" in lines[-1]
    planted = bench.generate_folder(tmp_path / "n200", 200)  # reused, not generated again
    assert planted["images"] == 200 and (tmp_path / "n200.complete").exists()
    assert not any(p.name.endswith(".complete") for p in (tmp_path / "n200").rglob("*"))
