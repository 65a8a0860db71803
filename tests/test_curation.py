"""Curation on real, deliberately broken files: every record ends kept or quarantined."""

from __future__ import annotations

import hashlib
import io
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageFile
from pydantic import ValidationError

from sail_pipeline.curation import (
    CurationAccountingError,
    CurationFilterParams,
    CurationParams,
    CurationResult,
    ExactDuplicateIndex,
    FolderSource,
    LlavaSource,
    Note,
    ParquetSource,
    RawRecord,
    Reason,
    Rejection,
    WebDatasetSource,
    WorldSource,
    check_accounting,
    curate_to_parquet,
    find_near_duplicates,
    funnel_metrics,
    hamming,
    run_curation,
    validate_record,
)
from sail_pipeline.curation import funnel as funnel_module
from sail_pipeline.glue.validation import validate_project
from sail_pipeline.schema import ExecutorParams, InvalidParameters
from tests.curation_fixtures import (
    KEPT,
    SEP,
    blocks,
    build_llava,
    build_messy_folder,
    build_other_sources,
    build_parquet_bytes,
    build_parquet_paths,
    build_webdataset,
    encoded,
)


def outcomes(result: CurationResult, source: str) -> dict[str, str]:
    """source_id → outcomes in input order ("kept", a reason, or both for a repeated id)."""
    found: dict[str, list[str]] = {}
    for source_id in result.manifest.loc[result.manifest["source"] == source, "source_id"]:
        found.setdefault(source_id, []).append(KEPT)
    rows = result.quarantine[result.quarantine["source"] == source]
    for source_id, reason in zip(rows["source_id"], rows["reason"], strict=True):
        found.setdefault(source_id, []).append(reason)
    return {key: SEP.join(value) for key, value in found.items()}


def assert_accounted(result: CurationResult) -> None:
    n_input = result.count("input")
    assert len(result.manifest) + len(result.quarantine) == n_input
    assert result.count("kept") == len(result.manifest)
    assert result.count("quarantined") == len(result.quarantine)
    assert result.manifest["id"].is_unique
    by_reason = Counter(result.quarantine["reason"])
    stages = result.funnel[~result.funnel["stage"].isin(["total", "note"])]
    assert dict(zip(stages["reason"], stages["count"], strict=True)) == {
        reason.value: by_reason.get(reason.value, 0) for reason in Reason
    }


def folder(path: Path, name: str = "messy") -> FolderSource:
    return FolderSource(kind="folder", name=name, path=str(path))


def quiet(sources: list, **settings) -> CurationResult:
    return run_curation(sources, CurationFilterParams(**settings), progress=False)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("messy")
    return root, build_messy_folder(root)


@pytest.fixture(scope="module")
def world_scenes() -> pd.DataFrame:
    from sail_pipeline.world import WorldParams, generate_world

    return generate_world(WorldParams(n_train=20, n_benchmark=2)).scenes


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory, messy, world_scenes):
    """Every source kind, with the expected outcome of each id."""
    others, expected = build_other_sources(tmp_path_factory.mktemp("sources"))
    expected = {"messy": messy[1], **expected}
    sources = [folder(messy[0]), *others]
    result = run_curation(sources, CurationFilterParams(), world_scenes=world_scenes, progress=True)
    return sources, expected, result


# --- the messy folder ------------------------------------------------------------------------


def test_messy_folder_outcomes(messy):
    root, expected = messy
    result = quiet([folder(root)])
    assert outcomes(result, "messy") == expected
    assert_accounted(result)

    q = result.quarantine.set_index("source_id")["detail"]
    assert "messy:01_rgb.jpg" in q["15_exact_copy.jpg"]
    assert "messy:02_plain.png" in q["16_near_copy.jpg"]
    assert "pHash distance" in q["16_near_copy.jpg"]


def test_messy_folder_manifest(messy):
    root, _ = messy
    manifest = quiet([folder(root)]).manifest.set_index("source_id")

    assert manifest.loc["01_rgb.jpg", "alt_text"] == "a mosaïque of coloured squares"
    assert pd.isna(manifest.loc["02_plain.png", "alt_text"])  # no sidecar
    assert pd.isna(manifest.loc["14_empty_alt.png", "alt_text"])
    assert "alt_text_empty_to_null" in manifest.loc["14_empty_alt.png", "normalised"]

    rotated = manifest.loc["12_exif_rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (80, 120)  # stored 120x80, orientation 6
    assert "exif_transposed" in rotated["normalised"]

    assert manifest.loc["09_cmyk.jpg", "mode_in"] == "CMYK"
    assert "cmyk_to_rgb" in manifest.loc["09_cmyk.jpg", "normalised"]
    assert manifest.loc["10_palette_alpha.png", "mode_in"] == "P"
    assert "alpha_on_white" in manifest.loc["10_palette_alpha.png", "normalised"]
    assert manifest.loc["11_gray16.png", "mode_in"].startswith("I")
    assert "high_bit_depth_to_8bit" in manifest.loc["11_gray16.png", "normalised"]
    assert manifest.loc["02_plain.png", "normalised"] == ""

    # format and sha256 describe the original file; the image column is normalised PNG
    assert manifest.loc["01_rgb.jpg", "format"] == "JPEG"
    for source_id, row in manifest.iterrows():
        assert row["sha256"] == hashlib.sha256((root / source_id).read_bytes()).hexdigest()
        with Image.open(io.BytesIO(row["image"])) as image:
            assert (image.format, image.mode) == ("PNG", "RGB")
            assert image.size == (row["width"], row["height"])

    # 16-bit was scaled, not clipped: the 8-bit picture keeps its full range
    with Image.open(io.BytesIO(manifest.loc["11_gray16.png", "image"])) as gray:
        low, high = gray.convert("L").getextrema()
    assert high > 200 and low < 60


def test_near_duplicates_can_be_disabled(messy):
    root, expected = messy
    result = quiet([folder(root)], near_duplicate_max_distance=None)
    assert outcomes(result, "messy") == {**expected, "16_near_copy.jpg": KEPT}
    # Without the exact check, an identical copy is still a near duplicate at distance 0.
    no_exact = outcomes(quiet([folder(root)], exact_dedup=False), "messy")
    assert no_exact["15_exact_copy.jpg"] == "near_duplicate"


def test_pixel_limit_and_pillow_globals_restored(tmp_path):
    (tmp_path / "a_big.png").write_bytes(encoded(blocks(1), "PNG"))  # 65,536 px
    (tmp_path / "b_ok.png").write_bytes(encoded(blocks(2, (100, 100)), "PNG"))
    cut = encoded(blocks(3, (100, 100)), "JPEG")
    (tmp_path / "c_cut.jpg").write_bytes(cut[: len(cut) // 2])
    before = Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # a caller's setting must neither leak in nor be lost
    try:
        # Between max_pixels and twice it, Pillow only warns; the warning must become the reason.
        result = quiet([folder(tmp_path, "p")], max_pixels=50_000)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert Image.MAX_IMAGE_PIXELS == before
    assert outcomes(result, "p") == {"a_big.png": "too_many_pixels", "b_ok.png": KEPT,
                                     "c_cut.jpg": "truncated"}


def test_alt_text_required(messy):
    root, expected = messy
    result = quiet([folder(root)], alt_text_required=True)
    got = outcomes(result, "messy")
    assert got["01_rgb.jpg"] == KEPT
    assert got["02_plain.png"] == "alt_text_missing"
    assert got["14_empty_alt.png"] == "alt_text_empty"
    assert_accounted(result)


# --- the other readers -----------------------------------------------------------------------


def test_webdataset_shards(tmp_path):
    expected = build_webdataset(tmp_path)
    result = quiet([WebDatasetSource(kind="webdataset", name="wds",
                                     shards=str(tmp_path / "*.tar"))])
    assert outcomes(result, "wds") == expected
    alt = result.manifest.set_index("source_id")["alt_text"]
    assert alt["s000"] == "caption from txt"
    assert alt["s001"] == "caption from json"
    assert result.manifest.set_index("source_id").loc["s004", "format"] == "WEBP"
    assert_accounted(result)


def test_parquet_with_bytes(tmp_path):
    path = tmp_path / "data.parquet"
    expected = build_parquet_bytes(path)
    result = quiet([ParquetSource(kind="parquet", name="pq", path=str(path), image_column="jpg",
                                  id_column="key", alt_text_column="caption")])
    assert outcomes(result, "pq") == expected
    alt = result.manifest.set_index("source_id")["alt_text"]
    assert alt["p0"] == "first caption" and pd.isna(alt["p3"])


def test_parquet_with_paths(tmp_path):
    path = tmp_path / "index.parquet"
    expected = build_parquet_paths(path)
    result = quiet([ParquetSource(kind="parquet", name="pq", path=str(path), path_column="file",
                                  alt_text_column="text")])
    assert outcomes(result, "pq") == expected
    assert result.manifest.set_index("source_id").loc["img/b.jpg", "alt_text"] == "alt b"


def test_llava_json(tmp_path):
    path = tmp_path / "chat.json"
    expected = build_llava(path)
    result = quiet([LlavaSource(kind="llava", name="llava", path=str(path),
                                image_folder=str(tmp_path / "images"))])
    assert outcomes(result, "llava") == expected
    alt = result.manifest.set_index("source_id")["alt_text"]
    assert alt["l0"] == "A grid of coloured squares."  # <image> stripped, first gpt reply
    assert alt["3"] == "Numeric id."


def test_world_scenes(world_scenes):
    result = run_curation([WorldSource(kind="world")],
                          CurationFilterParams(near_duplicate_max_distance=None),
                          world_scenes=world_scenes, progress=False)
    train = world_scenes[world_scenes["split"] == "train"]
    assert list(result.manifest["id"]) == [f"world:{i}" for i in train["id"]]  # benchmark out
    assert list(result.manifest["alt_text"]) == list(train["alt_text"])
    assert result.quarantine.empty
    with pytest.raises(ValueError, match="world_scenes"):
        run_curation([WorldSource(kind="world")], progress=False)


def test_broken_sources_become_one_record_each(tmp_path):
    (tmp_path / "not.parquet").write_bytes(b"PAR1 but not really")
    (tmp_path / "bad.json").write_text("[{not json")
    result = quiet([
        folder(tmp_path / "nowhere", "f"),
        WebDatasetSource(kind="webdataset", name="w", shards=str(tmp_path / "none-*.tar")),
        ParquetSource(kind="parquet", name="p", path=str(tmp_path / "not.parquet"),
                      image_column="image"),
        ParquetSource(kind="parquet", name="p_gone", path=str(tmp_path / "gone.parquet"),
                      image_column="image"),
        LlavaSource(kind="llava", name="l", path=str(tmp_path / "bad.json"),
                    image_folder=str(tmp_path)),
    ])
    assert result.manifest.empty
    assert dict(zip(result.quarantine["source"], result.quarantine["reason"], strict=True)) == {
        "f": "missing_file", "w": "missing_file", "p": "reader_error",
        "p_gone": "missing_file", "l": "reader_error"}
    assert_accounted(result)


# --- the combined run ------------------------------------------------------------------------


def test_combined_run_accounts_for_every_record(everything):
    _, expected, result = everything
    assert_accounted(result)
    for source, want in expected.items():
        assert outcomes(result, source) == want, source
    world = outcomes(result, "world")
    assert len(world) == 20 and set(world.values()) <= {KEPT, "near_duplicate"}
    # duplicate ids: 3 repeats (wds s000, parquet p0, llava l0) on top of the distinct ids
    n_ids = sum(len(v) for v in expected.values()) + len(world)
    assert result.count("input") == n_ids + 3
    assert result.count("duplicate_id") == 3


def test_ids_are_stable_and_independent_of_source_order(everything, world_scenes):
    sources, _, first = everything
    again = run_curation(list(reversed(sources)), world_scenes=world_scenes, progress=False)

    def by_id(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["id", *frame.columns.drop("id")]).reset_index(drop=True)

    # No record is duplicated across sources here, so even the decisions do not depend on order.
    pd.testing.assert_frame_equal(by_id(first.manifest), by_id(again.manifest))
    pd.testing.assert_frame_equal(by_id(first.quarantine), by_id(again.quarantine))


def test_accounting_guard_fires_on_a_lost_record():
    manifest = pd.DataFrame({"id": ["a:1"]})
    quarantine = pd.DataFrame({"id": ["a:2"], "reason": ["too_small"]})
    check_accounting(Counter(["a:1", "a:2"]), manifest, quarantine)
    with pytest.raises(CurationAccountingError, match="kept 1 \\+ quarantined 1 != input 3"):
        check_accounting(Counter(["a:1", "a:2", "a:3"]), manifest, quarantine)
    with pytest.raises(CurationAccountingError, match="both kept and quarantined"):
        check_accounting(Counter(["a:1", "a:1"]), manifest,
                         pd.DataFrame({"id": ["a:1"], "reason": ["too_small"]}))


def test_single_records_without_a_run():
    settings = CurationFilterParams()
    good = RawRecord("s", "a", data=encoded(blocks(5, (64, 48)), "PNG"), alt_text_raw="hi")
    prepared, valid = validate_record(good, settings)
    assert (valid.width, valid.height, valid.format, prepared.alt_text) == (64, 48, "PNG", "hi")
    # A lone surrogate (legal in JSON, illegal in UTF-8) is as broken as bad bytes.
    lone = RawRecord("s", "b", data=good.data, alt_text_raw="bad \ud800")
    assert validate_record(lone, settings).reason is Reason.ALT_TEXT_NOT_UTF8
    missing = validate_record(RawRecord("s", "c", path="/nonexistent/x.png"), settings)
    assert isinstance(missing, Rejection) and missing.reason is Reason.MISSING_FILE


def test_world_table_with_a_bad_row(world_scenes):
    scenes = world_scenes.head(3).copy()
    scenes["image"] = scenes["image"].astype(object)
    scenes.loc[scenes.index[1], "image"] = 5  # bytes(5) would be five NULs; must not pass
    result = run_curation([WorldSource(kind="world")], world_scenes=scenes, progress=False)
    assert outcomes(result, "world")[scenes["id"].iloc[1]] == "no_image"
    assert_accounted(result)


def test_funnel_metrics(everything):
    metrics = funnel_metrics(everything[2].funnel)
    assert metrics["curation.input"] == metrics["curation.kept"] + metrics["curation.quarantined"]
    assert metrics["curation.validate.truncated"] == 1
    assert metrics["curation.note.exif_transposed"] == 1


# --- dedup and settings ----------------------------------------------------------------------


@pytest.mark.parametrize("max_distance", [0, 3, 6, 10])
def test_banded_near_duplicates_match_brute_force(max_distance):
    rng = random.Random(max_distance)
    hashes = [rng.getrandbits(64) for _ in range(150)]
    for _ in range(150):  # planted neighbours at distances around the threshold
        flips = rng.sample(range(64), rng.randint(0, max_distance + 2))
        hashes.append(rng.choice(hashes) ^ sum(1 << bit for bit in flips))
    ids = [f"h{i}" for i in range(len(hashes))]

    kept: list[int] = []
    brute: dict[str, tuple[str, int]] = {}
    for i, value in enumerate(hashes):
        near = [(hamming(value, hashes[k]), k) for k in kept]
        near = [pair for pair in near if pair[0] <= max_distance]
        if near:
            distance, k = min(near)
            brute[ids[i]] = (ids[k], distance)
        else:
            kept.append(i)
    assert brute  # the planted neighbours must exercise the matching
    assert find_near_duplicates(ids, hashes, max_distance) == brute


def planted_copies(path: Path, sidecars: dict[str, bytes | None], other: int = 51,
                   name: str = "copies") -> FolderSource:
    """One image's bytes under each name (in name order), with an alt-text sidecar or none,
    and a different image (seed `other`) after them; the folder source."""
    path.mkdir(parents=True)
    data = encoded(blocks(50), "PNG")
    for stem, sidecar in sidecars.items():
        (path / f"{stem}.png").write_bytes(data)
        if sidecar is not None:
            (path / f"{stem}.txt").write_bytes(sidecar)
    (path / "z_other.png").write_bytes(encoded(blocks(other), "PNG"))
    return folder(path, name)


def assert_notes_match_the_manifest(result: CurationResult) -> None:
    """The funnel's notes count the kept records' notes: a replaced copy's left with it."""
    noted = Counter(note for text in result.manifest["normalised"] for note in text.split(";")
                    if note)
    notes = result.funnel[result.funnel["stage"] == "note"]
    assert dict(zip(notes["reason"], notes["count"], strict=True)) == {
        note.value: noted.get(note.value, 0) for note in Note}


@pytest.mark.parametrize("chunk_size", [4096, 1])  # 1: every copy in a chunk of its own
@pytest.mark.parametrize(("sidecars", "winner"), [
    # only the second copy has an alt-text: it is kept, the first goes
    ({"a": None, "b": b"the caption\n"}, "b"),
    # an alt-text of whitespace is none (null, noted alt_text_empty_to_null)
    ({"a": b"  \n", "b": b"the caption"}, "b"),
    # both have one, or neither: the first, as before
    ({"a": b"first caption", "b": b"second caption"}, "a"),
    ({"a": None, "b": None}, "a"),
    ({"a": None, "b": b"  "}, "a"),
    # several with one after one without: the first of those with one
    ({"a": None, "b": b"second caption", "c": b"third caption", "d": None}, "b"),
], ids=["second-only", "first-blank", "both", "neither", "neither-blank", "first-with"])
def test_exact_duplicates_keep_the_copy_with_an_alt_text(tmp_path, sidecars, winner, chunk_size):
    source = planted_copies(tmp_path / "copies", sidecars)
    result = run_curation([source], CurationFilterParams(), progress=False,
                          executor=ExecutorParams(chunk_size=chunk_size, batch_size=1))
    assert outcomes(result, "copies") == {
        **{f"{name}.png": KEPT if name == winner else "exact_duplicate" for name in sidecars},
        "z_other.png": KEPT}
    kept = result.manifest.set_index("source_id")
    alt_text = sidecars[winner] and sidecars[winner].decode().strip() or None
    assert kept.loc[f"{winner}.png", "alt_text"] == alt_text
    # Every dropped copy is quarantined with the reason, its detail naming the kept one.
    details = result.quarantine.set_index("source_id")["detail"]
    for name in sidecars.keys() - {winner}:
        assert f"same sha256 as copies:{winner}.png" in details[f"{name}.png"]
    assert_accounted(result)
    assert_notes_match_the_manifest(result)
    check_accounting(Counter(f"copies:{name}.png" for name in [*sidecars, "z_other"]),
                     result.manifest, result.quarantine)


def test_a_replaced_copy_already_written_leaves_the_streamed_manifest(tmp_path, monkeypatch):
    """The first copy (no alt-text) is written to the file before the second (with one) is
    read: it is withdrawn, and the files equal the in-memory run, across sources too."""
    monkeypatch.setattr(funnel_module, "FLUSH_BYTES", 1)  # every kept row goes out at once
    first = planted_copies(tmp_path / "first", {"a": None, "b": None})
    second = planted_copies(tmp_path / "second", {"a": b"a caption at last"}, other=52,
                            name="second")
    sources = [first, second]
    executor = ExecutorParams(chunk_size=2, batch_size=1)
    memory = run_curation(sources, CurationFilterParams(), progress=False, executor=executor)
    files = curate_to_parquet(sources, tmp_path / "out" / "m.parquet",
                              tmp_path / "out" / "q.parquet", CurationFilterParams(),
                              progress=False, executor=executor)
    manifest, quarantine = files.manifest.read(), files.quarantine.read()
    pd.testing.assert_frame_equal(manifest, memory.manifest)
    pd.testing.assert_frame_equal(quarantine, memory.quarantine)
    pd.testing.assert_frame_equal(files.funnel, memory.funnel)
    assert len(files.manifest) == len(manifest) == 3
    assert list(manifest["id"]) == ["copies:z_other.png", "second:a.png", "second:z_other.png"]
    assert manifest.set_index("id").loc["second:a.png", "alt_text"] == "a caption at last"
    assert dict(zip(quarantine["id"], quarantine["reason"], strict=True)) == {
        "copies:a.png": "exact_duplicate", "copies:b.png": "exact_duplicate"}
    assert "second:a.png" in quarantine.set_index("id").loc["copies:a.png", "detail"]
    assert files.count("exact_duplicate") == 2 and files.count("kept") == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.parquet", "q.parquet"]


def test_exact_duplicate_index_keeps_the_first_copy_with_an_alt_text():
    index = ExactDuplicateIndex()
    digest = hashlib.sha256(b"same bytes").hexdigest()
    assert index.add("a", digest) is None and index.match(digest) == "a"
    assert index.add("b", digest, has_alt_text=False) == "b"  # neither: the first stays
    assert index.add("c", digest, has_alt_text=True) == "a"  # c replaces a
    assert index.add("d", digest, has_alt_text=True) == "d"  # both: the first with one stays
    assert index.match(digest) == "c"
    assert index.match(hashlib.sha256(b"other").hexdigest()) is None


def test_params_schema():
    # One funnel table holds both; a shared name would make a count ambiguous.
    assert not {r.value for r in Reason} & {n.value for n in Note}
    params = CurationParams.model_validate({
        "sources": [
            {"kind": "folder", "name": "raw", "path": "data/01_raw/images"},
            {"kind": "world"},
        ],
        "settings": {"min_side": 16, "near_duplicate_max_distance": None},
    })
    assert params.sources[1].name == "world" and params.settings.max_aspect_ratio == 5.0

    with pytest.raises(ValidationError, match="min_sidee"):
        CurationParams.model_validate({"sources": [{"kind": "world"}],
                                       "settings": {"min_sidee": 3}})
    with pytest.raises(ValidationError, match="exactly one"):
        ParquetSource(kind="parquet", name="p", path="x.parquet", image_column="a",
                      path_column="b")
    with pytest.raises(ValidationError, match="unique"):
        CurationParams.model_validate({"sources": [{"kind": "world"}, {"kind": "world"}]})
    # Pillow's formats are a registry: checked when the run starts, not on import.
    with pytest.raises(InvalidParameters, match="curation.settings.allowed_formats.*EPSX"):
        validate_project({"curation": {"sources": [{"kind": "world"}],
                                       "settings": {"allowed_formats": ["JPEG", "EPSX"]}}})
    with pytest.raises(ValidationError, match="name"):
        FolderSource(kind="folder", name="a:b", path=".")
