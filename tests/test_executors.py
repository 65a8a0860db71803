"""Executors: per-batch work in-process (`plain`) or on Ray Data (`ray`), with the same output.

The Ray tests start one local Ray from this process (`ray.init(num_cpus=2)`, with worker
processes: `ray.init(local_mode=True)` raises "no longer supported" since Ray 2.5x), so batches
are pickled and run elsewhere as on a cluster. Curation and recaptioning run twice on the same
data, once per executor, and every output table is compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from sail_pipeline import executors
from sail_pipeline.captioning import (
    BackendFactory,
    OracleBackend,
    read_captions,
    read_failures,
    recaption,
)
from sail_pipeline.captioning.shards import list_shards
from sail_pipeline.curation import (
    CurationFilterParams,
    CurationParams,
    CurationResult,
    FolderSource,
    LlavaSource,
    ParquetSource,
    WebDatasetSource,
    WorldSource,
    run_curation,
)
from sail_pipeline.executors import ExecutorParams, map_batches
from sail_pipeline.schema import RecaptionParams
from tests.curation_fixtures import (
    KEPT,
    build_llava,
    build_messy_folder,
    build_parquet_bytes,
    build_webdataset,
)
from tests.test_recaption import Exploding

# Ray Data warns about its own deprecated settings whenever it copies its context.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
PLAIN = ExecutorParams()
# Small batches and chunks, so that a run crosses many of both and their boundaries.
RAY = ExecutorParams(kind="ray", batch_size=4, chunk_size=20, concurrency=2)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (start-up takes seconds), shut down after it."""
    pytest.importorskip("ray.data", reason='Ray Data is not installed (pip install -e '
                        '".[ray]"); `make test` installs it')
    import ray
    from ray import cloudpickle  # Ray pickles with its own copy

    # Classes defined here travel to the workers by value: the workers need not find tests/.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# --- the executor itself ------------------------------------------------------------------


def _table(n: int) -> pd.DataFrame:
    # The kinds of value a batch function gets: bytes, str, lists, and None.
    return pd.DataFrame({
        "key": [f"k{i}" for i in range(n)],
        "data": [bytes([i % 256]) * (i % 5) if i % 7 else None for i in range(n)],
        "text": [None if i % 3 == 0 else f"t{i}" for i in range(n)],
        "parts": [[f"p{j}" for j in range(i % 4)] for i in range(n)],
    })


def describe(batch: pd.DataFrame) -> pd.DataFrame:
    """A stateless batch function."""
    return pd.DataFrame({
        "key": batch["key"],
        "size": [None if d is None else len(d) for d in batch["data"]],
        "text": [t.upper() if t is not None else None for t in batch["text"]],
        "parts": [list(reversed(p)) for p in batch["parts"]],
        "types": [f"{type(d).__name__},{type(t).__name__},{type(p).__name__}"
                  for d, t, p in zip(batch["data"], batch["text"], batch["parts"], strict=True)],
    })


class Counting:
    """A stateful batch function: built once per worker, with constructor arguments."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"tag": [f"{self.prefix}{k}" for k in batch["key"]]})


def test_plain_calls_the_function_per_batch_in_order():
    table = _table(10)
    seen: list[int] = []

    def record(batch: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(batch))
        return describe(batch)

    out = map_batches(table, record, PLAIN, batch_size=4)
    assert seen == [4, 4, 2]
    assert list(out["key"]) == list(table["key"])
    # Missing is None, not NaN, and values keep their Python types.
    assert out["text"].iloc[0] is None and out["size"].iloc[0] is None
    assert out["types"].iloc[1] == "bytes,str,list"
    assert out["types"].iloc[0] == "NoneType,NoneType,list"
    tags = map_batches(table, Counting, PLAIN, batch_size=3, fn_constructor_args=("x-",))
    assert list(tags["tag"]) == [f"x-{k}" for k in table["key"]]
    assert map_batches(table.head(0), describe, PLAIN).empty


def test_outputs_in_any_order_and_grouping_come_back_in_input_order():
    # What Ray may do: blocks finish in any order, and a block may hold several batches.
    out = describe(executors.python_frame(_table(10)))
    out[executors._POSITION] = range(10)
    shuffled = iter([out.iloc[6:10], out.iloc[0:2], out.iloc[4:6], out.iloc[2:4]])
    batches = list(executors.in_input_order(shuffled, 10, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert list(pd.concat(batches)["key"]) == [f"k{i}" for i in range(10)]
    assert executors._POSITION not in batches[0].columns
    with pytest.raises(RuntimeError, match="no output came back for rows 6 to 8"):
        list(executors.in_input_order(iter([out.iloc[0:6]]), 10, batch_size=3))
    with pytest.raises(RuntimeError, match="beyond the input"):
        list(executors.in_input_order(iter([out, out.iloc[0:1]]), 10, batch_size=3))


def test_a_batch_function_must_return_one_row_per_row():
    with pytest.raises(RuntimeError, match="one row per input row"):
        map_batches(_table(5), lambda batch: batch.head(1), PLAIN, batch_size=5)
    with pytest.raises(TypeError, match="for a class"):
        map_batches(_table(5), describe, PLAIN, fn_constructor_args=(1,))


def test_executor_settings_fail_early():
    with pytest.raises(ValidationError, match="kind"):
        ExecutorParams(kind="spark")
    with pytest.raises(ValidationError, match="num_cpus"):
        ExecutorParams(kind="ray", ray_address="auto", num_cpus=4)
    with pytest.raises(ValidationError, match="batch_sise"):
        ExecutorParams(batch_sise=3)
    params = CurationParams.model_validate({"sources": [{"kind": "world"}],
                                            "executor": {"kind": "ray", "num_cpus": 2}})
    assert params.executor.kind == "ray" and params.executor.num_cpus == 2
    assert CurationParams.model_validate({"sources": [{"kind": "world"}]}).executor == PLAIN
    assert RecaptionParams(backend="oracle").executor == PLAIN


def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    # None in sys.modules makes `import ray` raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    ray = ExecutorParams(kind="ray")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        map_batches(_table(3), describe, ray)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        run_curation([FolderSource(kind="folder", name="m", path=str(tmp_path))],
                     progress=False, executor=ray)
    manifest = pd.DataFrame({"id": ["a"], "image": [b"png"], "alt_text": [None]})
    with pytest.raises(ImportError, match=r'pip install -e "\.\[ray\]"'):
        recaption(manifest, BackendFactory.oracle({}), tmp_path / "out",
                  RecaptionParams(backend="oracle", executor=ray), progress=False)
    assert not (tmp_path / "out").exists()


def test_ray_recaptioning_wants_a_factory_not_a_built_backend(tmp_path):
    manifest = pd.DataFrame({"id": ["a"], "image": [b"png"], "alt_text": [None]})
    settings = RecaptionParams(backend="oracle", executor={"kind": "ray"})
    with pytest.raises(TypeError, match="BackendFactory"):
        recaption(manifest, OracleBackend({"a": "x"}), tmp_path, settings, progress=False)
    assert not list(tmp_path.iterdir())  # refused before any work
    # The plain executor takes either, and a factory's name is checked like a backend's.
    factory = BackendFactory.oracle({"a": "x"})
    assert factory.name == "oracle" and isinstance(factory(), OracleBackend)
    with pytest.raises(ValueError, match="'local' but the backend given is a factory"):
        recaption(manifest, factory, tmp_path, RecaptionParams(backend="local"))
    summary = recaption(manifest, factory, tmp_path, RecaptionParams(backend="oracle"),
                        progress=False)
    assert summary.captioned == 1


def test_ray_map_batches_equals_plain(ray_local):
    table = _table(41)
    plain = map_batches(table, describe, PLAIN, batch_size=4)
    on_ray = map_batches(table, describe, RAY, batch_size=4)
    pd.testing.assert_frame_equal(plain, on_ray)
    assert plain["types"].iloc[1] == "bytes,str,list"  # the function saw the same values
    # Stateful functions (actor pools) are compared by the recaptioning test below.


# --- curation: the same manifest, quarantine and funnel -----------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory, small_world):
    root = tmp_path_factory.mktemp("sources")
    expected = build_messy_folder(root / "messy")
    build_webdataset(root / "wds")
    build_parquet_bytes(root / "pq" / "data.parquet")
    build_llava(root / "llava" / "chat.json")
    specs = [
        FolderSource(kind="folder", name="messy", path=str(root / "messy")),
        WebDatasetSource(kind="webdataset", name="wds", shards=str(root / "wds" / "*.tar")),
        ParquetSource(kind="parquet", name="pq", path=str(root / "pq" / "data.parquet"),
                      image_column="jpg", id_column="key", alt_text_column="caption"),
        LlavaSource(kind="llava", name="llava", path=str(root / "llava" / "chat.json"),
                    image_folder=str(root / "llava" / "images")),
        WorldSource(kind="world"),
        # The same files again: every kept image of `messy` comes back as an exact duplicate,
        # which only the driver, deciding in input order, can tell from the original.
        FolderSource(kind="folder", name="again", path=str(root / "messy")),
    ]
    return specs, expected, small_world.scenes


def _curate(sources, executor: ExecutorParams) -> CurationResult:
    specs, _, scenes = sources
    # Near-duplicate detection on (the default world config turns it off), so it is compared.
    return run_curation(specs, CurationFilterParams(near_duplicate_max_distance=6),
                        world_scenes=scenes, progress=False, executor=executor)


def test_curation_on_ray_equals_plain(ray_local, sources):
    plain, on_ray = _curate(sources, PLAIN), _curate(sources, RAY)
    pd.testing.assert_frame_equal(plain.manifest, on_ray.manifest)  # images byte for byte
    pd.testing.assert_frame_equal(plain.quarantine, on_ray.quarantine)
    pd.testing.assert_frame_equal(plain.funnel, on_ray.funnel)
    # The data really is messy, and the outcomes are the expected ones, not merely equal.
    reasons = set(plain.quarantine["reason"])
    assert {"exact_duplicate", "near_duplicate", "duplicate_id", "truncated", "undecodable",
            "too_many_pixels", "reader_error"} <= reasons
    messy = {sid: KEPT for sid in plain.manifest.loc[plain.manifest["source"] == "messy",
                                                     "source_id"]}
    messy |= dict(plain.quarantine.loc[plain.quarantine["source"] == "messy",
                                       ["source_id", "reason"]].itertuples(index=False))
    assert messy == sources[1]
    again = plain.quarantine[plain.quarantine["source"] == "again"]
    kept_in_messy = {sid for sid, outcome in sources[1].items() if outcome == KEPT}
    assert set(again.loc[again["reason"] == "exact_duplicate", "source_id"]) == \
        kept_in_messy | {"15_exact_copy.jpg"}  # a copy of a kept image, copied again
    assert plain.count("input") > 5 * RAY.chunk_size


# --- recaptioning: the same captions and failures ------------------------------------------


def _outcomes(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    names = [p.name for kind in ("captions", "failures") for _, p in list_shards(out, kind)]
    return read_captions(out), read_failures(out), names


def test_recaption_on_ray_equals_plain(ray_local, tmp_path, small_world):
    scenes = small_world.scenes.head(45).reset_index(drop=True)
    manifest = scenes[["id", "image", "alt_text"]].copy()
    manifest.loc[3, "image"] = None  # recorded by the driver, never sent
    manifest.loc[[4, 20], "alt_text"] = None  # the caption prompt, not the recaption one
    captions = dict(zip(scenes["id"], scenes["reference_caption"], strict=True))
    del captions[manifest.loc[5, "id"]]  # "no reference caption"
    captions[manifest.loc[6, "id"]] = "   "  # "empty caption"
    factory = BackendFactory(Exploding, (captions, manifest.loc[30, "id"]))
    settings = {"backend": "oracle", "shard_size": 8, "batch_size": 3, "length_group_window": 2}

    # The first 20 ids first, so the second call resumes: finished ids must be skipped.
    runs = {}
    for name, executor in (("plain", PLAIN), ("ray", RAY)):
        out = tmp_path / name
        recaption(manifest.head(20), factory, out,
                  RecaptionParams(**settings, executor=executor), progress=False)
        summary = recaption(manifest, factory, out,
                            RecaptionParams(**settings, executor=executor), progress=False)
        runs[name] = (summary, *_outcomes(out))

    (plain, *plain_tables), (on_ray, *ray_tables) = runs["plain"], runs["ray"]
    for a, b in zip(plain_tables[:2], ray_tables[:2], strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert plain_tables[2] == ray_tables[2]  # the same shard files, index by index
    for field in ("total", "skipped", "captioned", "failed", "failed_by_reason", "retried",
                  "shards_written"):
        assert getattr(plain, field) == getattr(on_ray, field), field
    captions_table, failures = plain_tables[:2]
    assert captions_table["id"].is_unique and len(captions_table) == 45 - 4
    assert dict(zip(failures["id"], failures["error"].str.split(":").str[0], strict=True)) == {
        manifest.loc[3, "id"]: "missing image", manifest.loc[5, "id"]: "no reference caption",
        manifest.loc[6, "id"]: "empty caption", manifest.loc[30, "id"]: "backend error"}
    assert plain.skipped == 20 - 3 and plain.retried == 3  # ids 3, 5 and 6 failed in run one
