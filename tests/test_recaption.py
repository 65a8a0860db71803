"""Recaptioning at scale: backends, length-grouped batches, resumable shards (killed for real).

The world's scenes are the manifest (id, PNG bytes, alt-text) and their reference captions the
oracle. The local backend runs a tiny random-weight VLM: its captions are garbage, but greedy
garbage is deterministic, so batched and one-by-one captions must agree id by id.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from aiohttp import web
from pydantic import ValidationError

from sail_pipeline.captioning import (
    ApiBackend,
    ApiCaptioner,
    CaptionItem,
    CaptionOutcome,
    LocalBackend,
    OracleBackend,
    VllmBackend,
    build_prompt,
    length_grouped,
    read_captions,
    read_failures,
    recaption,
)
from sail_pipeline.captioning.local_server import chat_reply, image_of, prompt_of, serve_canned
from sail_pipeline.captioning.shards import list_shards, read_shards, write_shard
from sail_pipeline.schema import ApiParams, RecaptionParams
from tests.kills import kill_points, kill_when

FINAL_SHARD = r"^(captions|failures)-\d{5}\.parquet$"


def settings(**overrides) -> RecaptionParams:
    return RecaptionParams(**{"backend": "oracle", "shard_size": 8, "batch_size": 4,
                                **overrides})


def manifest_of(scenes: pd.DataFrame, n: int) -> pd.DataFrame:
    return scenes.head(n)[["id", "image", "alt_text"]].reset_index(drop=True)


def oracle_of(scenes: pd.DataFrame) -> dict[str, str]:
    return dict(zip(scenes["id"], scenes["reference_caption"], strict=True))


def final_names(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


@pytest.fixture(scope="module")
def scenes(small_world) -> pd.DataFrame:
    return small_world.scenes.reset_index(drop=True)


# --- settings, prompts, grouping ------------------------------------------------------------

def test_settings_fail_early_naming_the_problem():
    with pytest.raises(ValidationError, match="shard_sise"):
        RecaptionParams(backend="oracle", shard_sise=3)
    with pytest.raises(ValidationError, match="backend"):
        RecaptionParams(backend="gpt4")
    with pytest.raises(ValidationError, match="alt_text"):
        RecaptionParams(backend="local", recaption_prompt="Describe: {alt}")
    with pytest.raises(ValidationError, match="placeholder"):
        RecaptionParams(backend="local", recaption_prompt="{alt_text} in {style}")


def test_prompt_uses_alt_text_only_when_present_and_enabled():
    on = settings()
    prompt, kind, truncated = build_prompt("  a red circle ", on)
    assert kind == "recaption" and prompt.endswith('is: "a red circle"') and not truncated
    for missing in (None, "", "   ", float("nan")):
        assert build_prompt(missing, on) == ("Describe the image in detail.", "caption", False)
    assert build_prompt("a red circle", settings(use_alt_text=False))[1] == "caption"
    braces = settings(recaption_prompt="{alt_text} {{literal}}")
    assert build_prompt("{x}", braces)[0] == "{x} {literal}"  # alt-text is data, not template


def test_length_grouping_sorts_within_windows_and_keeps_every_item():
    items = [(f"id{i}", (i * 7) % 10) for i in range(25)]
    batches = length_grouped(items, lambda item: item[1], batch_size=3, window=2)
    assert [len(b) for b in batches] == [3, 3, 3, 3, 3, 3, 3, 3, 1]
    flat = [item for batch in batches for item in batch]
    assert sorted(flat) == sorted(items)
    for start in range(0, 25, 6):  # each window of 2 batches is sorted, none crosses windows
        window = flat[start:start + 6]
        assert window == sorted(items[start:start + 6], key=lambda item: item[1])
    assert batches == length_grouped(items, lambda item: item[1], 3, 2)  # deterministic


# --- the shard loop with the oracle -----------------------------------------------------------

def test_every_id_ends_captioned_or_failed_with_a_reason(tmp_path, scenes):
    manifest = manifest_of(scenes, 20)
    manifest.loc[3, "image"] = None  # bad input: recorded, never sent to the backend
    manifest.loc[4, "alt_text"] = None
    oracle = oracle_of(scenes)
    del oracle[manifest.loc[5, "id"]]
    summary = recaption(manifest, OracleBackend(oracle), tmp_path, settings(), progress=False)

    captions, failures = read_captions(tmp_path), read_failures(tmp_path)
    assert len(captions) == 18 and captions["id"].is_unique
    assert set(captions["id"]) | set(failures["id"]) == set(manifest["id"])
    assert dict(zip(failures["id"], failures["error"], strict=True)) == {
        manifest.loc[3, "id"]: "missing image: no bytes",
        manifest.loc[5, "id"]: "no reference caption"}
    assert all(captions["caption"] == captions["id"].map(oracle))
    kinds = dict(zip(captions["id"], captions["prompt_kind"], strict=True))
    assert kinds[manifest.loc[4, "id"]] == "caption" and kinds[manifest.loc[0, "id"]] == "recaption"
    assert set(captions["backend"]) == {"oracle"}
    assert (summary.total, summary.skipped, summary.captioned, summary.failed) == (20, 0, 18, 2)
    assert summary.failed_by_reason == {"missing image": 1, "no reference caption": 1}
    assert final_names(tmp_path) == ["captions-00000.parquet", "captions-00001.parquet",
                                     "captions-00002.parquet", "failures-00000.parquet"]
    assert summary.shards_written == 4 and summary.metrics()["recaption/captioned"] == 18

    again = recaption(manifest, OracleBackend(oracle), tmp_path, settings(), progress=False)
    assert (again.skipped, again.captioned, again.retried, again.failed) == (18, 0, 2, 2)
    assert len(read_failures(tmp_path)) == 2 and len(read_captions(tmp_path)) == 18
    assert final_names(tmp_path)[-1] == "failures-00003.parquet"  # next free index


def test_a_second_run_on_the_same_shard_folder_waits_then_skips_what_the_first_did(
        tmp_path, scenes, caplog):
    """Two runs with other outputs can share a shard folder (same captioner, same prompts):
    the second waits for the first's lock, then captions nothing twice."""
    import threading

    from sail_pipeline.folder_lock import sole_writer

    manifest = manifest_of(scenes, 12)
    oracle = OracleBackend(oracle_of(scenes))
    done: dict = {}
    recaption(manifest.head(8), oracle, tmp_path, settings(), progress=False)  # the first's work
    with sole_writer(tmp_path, "the first run"):  # ...and the first run not done yet
        second = threading.Thread(target=lambda: done.setdefault(
            "summary", recaption(manifest, oracle, tmp_path, settings(), progress=False)))
        with caplog.at_level(logging.WARNING, logger="sail_pipeline.glue.run_lock"):
            second.start()
            second.join(timeout=1.0)
            assert second.is_alive() and not done, "the second run wrote beside the first"
    second.join(timeout=60)
    assert done["summary"].skipped == 8 and done["summary"].captioned == 4
    assert "recaptioning: " in caplog.text and "is being written by another run" in caplog.text
    captions = read_captions(tmp_path)
    assert len(captions) == 12 and captions["id"].is_unique


class FlakyOracle(OracleBackend):
    """Fails the given ids once each, like a server that was briefly overloaded."""

    def __init__(self, captions, flaky: set[str]) -> None:
        super().__init__(captions)
        self.flaky = set(flaky)

    def caption(self, items):
        outcomes = super().caption(items)
        hit = [o for o in outcomes if o.id in self.flaky]
        self.flaky -= {o.id for o in hit}
        return [CaptionOutcome(o.id, None, "http 503: overloaded") if o in hit else o
                for o in outcomes]


def test_ids_that_failed_are_retried_and_their_failure_superseded(tmp_path, scenes):
    manifest, oracle = manifest_of(scenes, 12), oracle_of(scenes)
    flaky = set(manifest["id"][[1, 9]])
    first = recaption(manifest, FlakyOracle(oracle, flaky), tmp_path, settings(), progress=False)
    assert first.failed_by_reason == {"http 503": 2}
    assert set(read_failures(tmp_path)["id"]) == flaky

    second = recaption(manifest, FlakyOracle(oracle, set()), tmp_path, settings(), progress=False)
    assert (second.skipped, second.retried, second.captioned, second.failed) == (10, 2, 2, 0)
    assert read_failures(tmp_path).empty
    captions = read_captions(tmp_path)
    assert sorted(captions["id"]) == sorted(manifest["id"])
    assert all(captions["caption"] == captions["id"].map(oracle))


class Exploding(OracleBackend):
    """Raises for any batch holding the poisoned id (as a crashing model call would)."""

    def __init__(self, captions, poison: str) -> None:
        super().__init__(captions)
        self.poison = poison

    def caption(self, items):
        if any(item.id == self.poison for item in items):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return super().caption(items)


def test_an_exception_costs_only_the_item_that_raised_it(tmp_path, scenes):
    manifest = manifest_of(scenes, 10)
    backend = Exploding(oracle_of(scenes), poison=manifest.loc[6, "id"])
    summary = recaption(manifest, backend, tmp_path, settings(), progress=False)
    assert summary.captioned == 9 and summary.failed_by_reason == {"backend error": 1}
    (error,) = read_failures(tmp_path)["error"]
    assert error.startswith("backend error: RuntimeError: CUDA error")


def test_an_empty_caption_is_a_failure_not_a_done_id(tmp_path, scenes):
    manifest = manifest_of(scenes, 4)
    oracle = oracle_of(scenes) | {manifest.loc[2, "id"]: "   "}
    summary = recaption(manifest, OracleBackend(oracle), tmp_path, settings(), progress=False)
    assert summary.failed_by_reason == {"empty caption": 1}
    assert list(read_failures(tmp_path)["id"]) == [manifest.loc[2, "id"]]


def test_a_backend_breaking_the_contract_stops_the_run(tmp_path, scenes):
    class Shuffling(OracleBackend):
        def caption(self, items):
            return list(reversed(super().caption(items)))

    with pytest.raises(RuntimeError, match="one per item, in order"):
        recaption(manifest_of(scenes, 4), Shuffling(oracle_of(scenes)), tmp_path, settings(),
                  progress=False)


def test_caller_bugs_fail_before_any_work(tmp_path, scenes):
    manifest = manifest_of(scenes, 6)
    oracle = OracleBackend(oracle_of(scenes))
    out = tmp_path / "out"
    duplicated = pd.concat([manifest, manifest.iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=f"duplicate ids.*{manifest.loc[2, 'id']}"):
        recaption(duplicated, oracle, out, settings())
    with pytest.raises(ValueError, match=r"lacks columns \['image', 'alt_text'\]"):
        recaption(manifest[["id"]], oracle, out, settings())
    with pytest.raises(ValueError, match="non-empty strings"):
        recaption(manifest.assign(id=range(6)), oracle, out, settings())
    with pytest.raises(ValueError, match="'local' but the backend given is OracleBackend"):
        recaption(manifest, oracle, out, settings(backend="local"))
    assert not out.exists()
    # Without alt-text prompts the column is not needed.
    summary = recaption(manifest[["id", "image"]], oracle, out, settings(use_alt_text=False),
                        progress=False)
    assert summary.captioned == 6


def test_duplicate_rows_across_shards_keep_the_first_and_are_counted(tmp_path, scenes):
    rows = [{"id": i, "caption": f"first {i}", "prompt_kind": "caption", "backend": "oracle"}
            for i in ("a", "b")]
    write_shard(pd.DataFrame(rows), tmp_path, "captions", 0)
    write_shard(pd.DataFrame([rows[1] | {"caption": "second b"}]), tmp_path, "captions", 1)
    write_shard(pd.DataFrame([{"id": "b", "error": "timeout"}]), tmp_path, "failures", 1)
    view = read_shards(tmp_path)
    assert view.duplicates == 1 and view.failures.empty
    assert dict(zip(view.captions["id"], view.captions["caption"], strict=True)) == {
        "a": "first a", "b": "first b"}
    with pytest.raises(FileExistsError):
        write_shard(pd.DataFrame(rows), tmp_path, "captions", 1)
    manifest = pd.DataFrame({"id": ["a", "b", "c"], "image": [b"png"] * 3,
                             "alt_text": [None] * 3})
    summary = recaption(manifest, OracleBackend({"c": "third"}), tmp_path, settings(),
                        progress=False)
    assert (summary.duplicates, summary.skipped, summary.captioned) == (1, 2, 1)
    assert list_shards(tmp_path, "captions")[-1][0] == 2  # the next free index


def test_a_crash_between_tmp_write_and_rename_leaves_nothing_visible(tmp_path, scenes,
                                                                      monkeypatch):
    manifest, oracle = manifest_of(scenes, 20), oracle_of(scenes)
    real_replace, calls = os.replace, []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-write")  # not an Exception: nothing catches it
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        recaption(manifest, OracleBackend(oracle), tmp_path, settings(), progress=False)
    monkeypatch.undo()
    assert final_names(tmp_path) == ["captions-00000.parquet"]
    assert (tmp_path / ".captions-00001.parquet.tmp").exists()  # ignored by readers
    assert len(read_captions(tmp_path)) == 8

    summary = recaption(manifest, OracleBackend(oracle), tmp_path, settings(), progress=False)
    assert (summary.skipped, summary.captioned, summary.duplicates) == (8, 12, 0)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert sorted(read_captions(tmp_path)["id"]) == sorted(manifest["id"])


# --- killed for real ------------------------------------------------------------------------

KILLED_RUN = textwrap.dedent('''
    import sys
    import time

    import pandas as pd

    from sail_pipeline.captioning import OracleBackend, recaption
    from sail_pipeline.schema import RecaptionParams
    class SlowOracle(OracleBackend):
        """Slow enough that a kill lands mid-run; says which ids it captioned."""

        def caption(self, items):
            with open(sys.argv[3], "a") as said:
                for item in items:
                    time.sleep(0.05)
                    said.write(item.id + "\\n")
            return super().caption(items)


    manifest = pd.read_parquet(sys.argv[1])
    oracle = dict(zip(manifest["id"], manifest["reference_caption"]))
    recaption(manifest[["id", "image", "alt_text"]], SlowOracle(oracle), sys.argv[2],
              RecaptionParams(backend="oracle", shard_size=8, batch_size=4), progress=False)
''')


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_run_resumes_to_exactly_one_caption_per_id(tmp_path, scenes, caplog):
    table = scenes.head(60)[["id", "image", "alt_text", "reference_caption"]]
    table.to_parquet(tmp_path / "manifest.parquet")
    (tmp_path / "killed_run.py").write_text(KILLED_RUN)
    out = tmp_path / "captions"
    done_before: set[str] = set()
    # Killed three times, once the run has written a drawn number of shards (of 8).
    for start, target in enumerate(kill_points(seed=55, count=3, low=1, high=6)):
        said = tmp_path / f"captioned-{start}.txt"
        process = subprocess.Popen([sys.executable, str(tmp_path / "killed_run.py"),
                                    str(tmp_path / "manifest.parquet"), str(out), str(said)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(process, lambda n=target: len(list_shards(out, "captions")) >= n,
                  f"{target} shards", timeout_s=90)
        assert all(pd.Series(final_names(out)).str.match(FINAL_SHARD))
        shards_now = read_shards(out)
        assert shards_now.duplicates == 0 and len(shards_now.captions) >= 8 * target
        # Finished work is not redone: this start captioned nothing an earlier one had written.
        captioned = set(said.read_text().split()) if said.exists() else set()
        assert not captioned & done_before, sorted(captioned & done_before)
        done_before = set(shards_now.captions["id"])
    (out / ".captions-00042.parquet.tmp").write_bytes(b"PAR1 half a shard")  # as if mid-write

    manifest = table[["id", "image", "alt_text"]]
    oracle = oracle_of(scenes)
    with caplog.at_level(logging.INFO, logger="sail_pipeline.captioning"):
        summary = recaption(manifest, OracleBackend(oracle), out, settings(), progress=False)
    # The log says what was resumed: the leftover removed, what was done before, what is left.
    assert "removed 1 unfinished shard file(s) of an interrupted run" in caplog.text
    assert (f"recaptioning {60 - len(done_before)} of 60 ids ({len(done_before)} done "
            f"before, 0 to retry)") in caplog.text
    assert summary.skipped == len(done_before)
    assert summary.captioned == 60 - len(done_before) and summary.failed == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # leftovers cleaned
    raw = pd.concat([pd.read_parquet(p) for _, p in list_shards(out, "captions")])
    assert len(raw) == 60 and raw["id"].is_unique  # not one duplicate across shards
    final = read_captions(out)
    assert sorted(final["id"]) == sorted(manifest["id"])
    assert all(final["caption"] == final["id"].map(oracle))


# --- the local backend: a tiny random-weight VLM --------------------------------------------

def test_local_batched_length_grouped_equals_one_by_one(tmp_path, scenes, tiny_generator):
    manifest = manifest_of(scenes, 12)
    manifest.loc[[2, 7], "alt_text"] = ["", "a very long and quite wrong alt-text " * 3]
    tokens = 6
    batched = recaption(manifest, LocalBackend(tiny_generator, tokens), tmp_path / "batched",
                        settings(backend="local", shard_size=12, batch_size=4,
                                 length_group_window=3), progress=False)
    single = recaption(manifest, LocalBackend(tiny_generator, tokens), tmp_path / "single",
                       settings(backend="local", shard_size=12, batch_size=1,
                                length_group_window=1), progress=False)
    assert batched.total == single.total == 12

    def outcomes(out: Path) -> dict[str, str]:
        view = read_shards(out)
        return (dict(zip(view.captions["id"], view.captions["caption"], strict=True))
                | dict(zip(view.failures["id"], view.failures["error"], strict=True)))

    batched_out, single_out = outcomes(tmp_path / "batched"), outcomes(tmp_path / "single")
    assert batched_out.keys() == single_out.keys()
    # Padding changes the matmul shapes, so a near-tie in greedy decoding may rarely flip;
    # a mix-up of ids would change nearly every caption.
    assert sum(batched_out[i] == single_out[i] for i in batched_out) >= len(batched_out) - 1
    # The grouped run really reordered (shorter prompts first), and the one-by-one run, in
    # input order, is the reference each id's caption is checked against above.
    captions = read_captions(tmp_path / "batched")
    assert list(captions["id"]) != [i for i in manifest["id"] if i in set(captions["id"])]
    assert len(captions) >= 10 and captions["caption"].nunique() >= 8  # garbage, but distinct


def test_local_backend_records_undecodable_images_and_captions_the_rest(tmp_path, scenes,
                                                                          tiny_generator):
    manifest = manifest_of(scenes, 6)
    good_png = manifest.loc[0, "image"]
    manifest.loc[1, "image"] = b"definitely not an image"
    manifest.loc[4, "image"] = good_png[: len(good_png) // 2]  # truncated mid-pixels
    summary = recaption(manifest, LocalBackend(tiny_generator, 4), tmp_path,
                        settings(backend="local"), progress=False)
    failures = read_failures(tmp_path).set_index("id")["error"]
    broken = set(manifest["id"][[1, 4]])
    assert all(failures[i].startswith("undecodable: ") for i in broken)
    # A random-weight model may still write an empty caption for a good image (recorded as
    # "empty caption"), but a good image is never called undecodable.
    assert not any(e.startswith("undecodable") for i, e in failures.items() if i not in broken)
    captioned = set(read_captions(tmp_path)["id"])
    assert captioned.isdisjoint(failures.index)
    assert captioned | set(failures.index) == set(manifest["id"])
    assert summary.failed_by_reason["undecodable"] == 2
    assert summary.captioned == len(captioned) >= 2


def test_local_backend_keeps_one_outcome_per_item_in_order(tiny_generator, scenes):
    items = [CaptionItem("x", b"junk", "p"), CaptionItem("y", scenes.loc[0, "image"], "p"),
             CaptionItem("z", b"", "p")]
    outcomes = LocalBackend(tiny_generator, 2).caption(items)
    assert [o.id for o in outcomes] == ["x", "y", "z"]
    assert [o.error is None for o in outcomes] == [False, True, False]


# --- the API backend against a real local HTTP server -----------------------------------------

def test_api_backend_records_a_400_and_captions_the_rest(tmp_path, scenes):
    async def handler(body, request):
        if "SCRIPTED-400" in prompt_of(body):
            return web.json_response({"error": {"message": "image too small"}}, status=400)
        return chat_reply(f"api caption of {len(image_of(body) or b'')} bytes")

    manifest = manifest_of(scenes, 5)
    manifest.loc[3, "alt_text"] = "SCRIPTED-400"
    with serve_canned(handler) as server:
        api = ApiParams(base_url=server.base_url, model="canned", max_retries=0,
                          concurrency=4)
        summary = recaption(manifest, ApiBackend(ApiCaptioner(api)), tmp_path,
                            settings(backend="api"), progress=False)
    assert summary.captioned == 4 and summary.failed_by_reason == {"http 400": 1}
    (error,) = read_failures(tmp_path)["error"]
    assert error.startswith("http 400") and "image too small" in error
    captions = read_captions(tmp_path)
    sizes = dict(zip(manifest["id"], manifest["image"].map(len), strict=True))
    assert all(captions["caption"] == captions["id"].map(lambda i: f"api caption of "
                                                          f"{sizes[i]} bytes"))
    assert set(captions["backend"]) == {"api"}


# --- vLLM: optional, GPU only -----------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_says_how_to_get_it():
    with pytest.raises(ImportError, match="pip install vllm") as raised:
        VllmBackend("some/model")
    assert "GPU" in str(raised.value) and "'local' backend" in str(raised.value)


def test_truncated_images_stay_undecodable_whatever_pillow_was_told(monkeypatch, scenes):
    from PIL import ImageFile

    from sail_pipeline.captioning.backends import decode_image

    # lmms-eval flips this global at import; a truncated file must still be rejected.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    png = scenes.loc[0, "image"]
    assert str(decode_image(png[: len(png) // 2])).startswith("undecodable: ")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for everyone else
    assert decode_image(png).mode == "RGB"
