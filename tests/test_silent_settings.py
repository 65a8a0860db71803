"""No setting that silently does nothing: a configured item that no node will use fails when the
run starts, naming its key and the fix; configurations without one validate with no report.

Property tests (hypothesis) draw such configurations over the default tree for each kind: an
extra caption source left out of `quality.sources`, a candidate SFT set that nothing draws
from, a variant that changes nothing (or only what its instance of the recipe does not read).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sail_pipeline.glue.validation import validate_project
from sail_pipeline.schema import CANDIDATES, InvalidParameters, deep_merge, validate_parameters
from sail_pipeline.schema.project import recipe_reads
from sail_pipeline.schema.quality import BUILT_IN_SOURCES
from sail_pipeline.schema.selection import EXPERIMENTS
from tests.test_pipelines import ROOT
from tests.test_schema_properties import BASE

NAME = st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z")
# conf/base's values with the schema's defaults filled in.
BASE_VALUES = validate_parameters(BASE).model_dump()


def _reported(error: InvalidParameters) -> dict[str, str]:
    """Each problem line of the error by the key it names (the text before its first ': ')."""
    lines = [line.strip() for line in str(error).splitlines()[1:]]
    return {line.split(": ", 1)[0]: line for line in lines}


def _get(tree: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        tree = tree[part]
    return tree


def _patch(path: str, value: Any) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    node = patch
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return patch


def test_the_project_configurations_report_nothing_unused():
    # conf/base alone, and with conf/micro (whose two example variants each change a setting);
    # conf/gpu: tests/test_gpu_config.py.
    assert validate_project(BASE).variants == {}
    micro = deep_merge(BASE, yaml.safe_load((ROOT / "conf/micro/parameters.yml").read_text()))
    assert sorted(validate_project(micro).variants) == ["fast", "seed_1"]


# --- quality.extra_sources ----------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(names=st.lists(NAME.filter(lambda n: n not in BUILT_IN_SOURCES), unique=True,
                      max_size=4),
       data=st.data())
def test_an_extra_source_left_out_of_quality_sources_fails_naming_it(names, data):
    listed = data.draw(st.permutations(names).flatmap(
        lambda order: st.integers(0, len(order)).map(lambda k: order[:k])), label="listed")
    tree = deep_merge(BASE, {"quality": {
        "sources": [*BUILT_IN_SOURCES, *listed],
        "extra_sources": [{"name": n, "path": f"/data/{n}.parquet"} for n in names]}})
    unlisted = {f"quality.extra_sources[{i}] ({n!r})" for i, n in enumerate(names)
                if n not in listed}
    event("reported" if unlisted else "validates")
    if not unlisted:
        assert [s.name for s in validate_parameters(tree).quality.extra_sources] == names
        return
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(tree)
    reported = _reported(error.value)
    assert set(reported) == unlisted, str(error.value)
    assert all(line.endswith("add it to quality.sources or remove it")
               for line in reported.values())


def test_an_extra_source_named_like_another_is_said_not_dropped():
    tree = deep_merge(BASE, {"quality": {
        "sources": [*BUILT_IN_SOURCES, "blip"],
        "extra_sources": [{"name": "alt_text", "path": "/a.parquet"},
                          {"name": "blip", "path": "/b.parquet"},
                          {"name": "blip", "path": "/c.parquet"}]}})
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(tree)
    reported = _reported(error.value)
    assert set(reported) == {"quality.extra_sources[0] ('alt_text')",
                             "quality.extra_sources[2] ('blip')"}
    assert "taken by a built-in source" in reported["quality.extra_sources[0] ('alt_text')"]
    assert "taken by an earlier extra source" in reported["quality.extra_sources[2] ('blip')"]


# --- sft.candidates -------------------------------------------------------------------------

# Where a drawn candidate set is named: nowhere, a stage's mixture, or a selection experiment.
PLACES = ("nowhere", "knowledge", "instruction", "preference", "quality", "incremental")


@pytest.fixture(scope="module")
def llava_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("candidates") / "set.json"
    path.write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "human", "value": "What colour?"}, {"from": "gpt", "value": "red"}]}]))
    return str(path)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAME.filter(lambda n: n not in CANDIDATES), unique=True, min_size=1,
                      max_size=4),
       experiments=st.lists(st.sampled_from(EXPERIMENTS), unique=True),
       data=st.data())
def test_a_candidate_set_nothing_draws_from_fails_naming_it(llava_file, names, experiments,
                                                             data):
    places = {n: data.draw(st.sampled_from(PLACES), label=n) for n in names}
    mixtures: dict[str, Any] = {}
    for stage in ("knowledge", "instruction", "preference"):
        mine = [n for n in names if places[n] == stage]
        if mine:  # half probes, half the user's sets; the base sources left out (`null`)
            base = _get(BASE, f"sft.mixtures.{stage}.sources")
            mixtures[stage] = {"sources": {k: None for k in base} | {"probes": 0.5} | {
                n: 0.5 / len(mine) for n in mine}}
    selection = BASE["selection"]
    tree = deep_merge(BASE, {
        "sft": {"candidates": {n: {"path": llava_file} for n in names}, "mixtures": mixtures},
        "selection": {"experiments": experiments,
                      "quality": {"candidates": [
                          *selection["quality"]["candidates"],
                          *(n for n in names if places[n] == "quality")]},
                      "incremental": {"candidates": [
                          *selection["incremental"]["candidates"],
                          *(n for n in names if places[n] == "incremental")]}}})
    drawn = {n for n in names if places[n] in ("knowledge", "instruction", "preference")
             or places[n] in experiments}
    unused = {f"sft.candidates.{n}" for n in names if n not in drawn}
    event("reported" if unused else "validates")
    if not unused:
        assert sorted(validate_project(tree).sft.candidates) == sorted(names)
        return
    with pytest.raises(InvalidParameters) as error:
        validate_project(tree)
    reported = _reported(error.value)
    assert set(reported) == unused, str(error.value)
    assert all("name it in an sft.mixtures.<stage>.sources" in line
               and line.endswith("or remove it") for line in reported.values())


def test_an_unused_candidate_is_said_beside_its_other_problems(tmp_path):
    tree = deep_merge(BASE, {"sft": {"candidates": {"mine": {"path": str(tmp_path / "x.json")}}}})
    with pytest.raises(InvalidParameters) as error:
        validate_project(tree)
    assert set(_reported(error.value)) == {"sft.candidates.mine.path", "sft.candidates.mine"}


# --- variants -------------------------------------------------------------------------------

# Settings a variant may override, each with a value other than conf/base's. Whether the
# variant's instance of the recipe reads one is decided below from the real pipeline (the first
# six, which a stage or evaluation reads, are only drawn more often).
OVERRIDES = {
    "runtime.seed": 7,
    "sft.knowledge.lr": 4.0e-3,
    "sft.preference.micro_batch_size": 5,
    "pretrain.alignment.lr": 1.0e-3,
    "evaluation.max_new_tokens": 12,
    "sft.schedule": "all_in_one",
    "data.world.n_train": 500,
    "data.advance_ocr": True,
    "pretrain.llm.train.lr": 1.0e-3,
    "quality.clip.steps": 50,
    "captioning.recaption.batch_size": 16,
    "statistics.level": 0.9,
    "selection.seeds": [4],
}


def _pipeline_reads(schedule: str) -> set[str]:
    """The `params:` inputs of the recipe template a variant runs, and `sft.schedule`, which
    the `variants` pipeline reads to build each instance's nodes."""
    from sail_pipeline.pipelines.recipe.pipeline import create_pipeline as recipe

    return {name.removeprefix("params:") for name in recipe(schedule=schedule).inputs()
            if name.startswith("params:")} | {"sft.schedule"}


def _read(path: str, reads: set[str]) -> bool:
    return any(path == r or path.startswith(r + ".") for r in reads)


@pytest.mark.parametrize("schedule", ["curriculum", "all_in_one"])
def test_what_a_variant_reads_is_what_its_pipeline_reads(schedule):
    assert recipe_reads(schedule) == _pipeline_reads(schedule)


def test_every_override_drawn_below_is_valid_and_changes_its_value():
    for path, value in OVERRIDES.items():
        assert _get(BASE_VALUES, path) != value, path
        assert _get(validate_parameters(deep_merge(BASE, _patch(path, value))).model_dump(),
                    path) == value, path


@settings(max_examples=100, deadline=None)
@given(variants=st.lists(st.dictionaries(
    st.one_of(st.sampled_from(list(OVERRIDES)[:6]), st.sampled_from(list(OVERRIDES))),
    st.booleans(), max_size=3), min_size=1, max_size=3))
def test_a_variant_that_changes_nothing_it_runs_fails_naming_it(variants):
    """Each drawn variant overrides some settings, each with a new value (True) or conf/base's
    own (False)."""
    reads = {s: _pipeline_reads(s) for s in ("curriculum", "all_in_one")}
    tree = deep_merge(BASE, {"variants": {f"v{i}": {} for i in range(len(variants))}})
    expected: dict[str, str] = {}
    kept: dict[frozenset, str] = {}  # a valid variant's changes -> its name
    for i, choice in enumerate(variants):
        name = f"v{i}"
        for path, changed in choice.items():
            tree = deep_merge(tree, {"variants": {name: _patch(
                path, OVERRIDES[path] if changed else _get(BASE_VALUES, path))}})
        changes = frozenset(path for path, changed in choice.items() if changed)
        schedule = "all_in_one" if "sft.schedule" in changes else "curriculum"
        ignored = {p for p in changes if not _read(p, reads[schedule])}
        if ignored:
            expected |= {f"variants.{name}.{p}": "set it at the top level, or remove it from "
                         "the variant" for p in ignored}
        elif not changes:
            expected[f"variants.{name}"] = "changes nothing"
        elif changes in kept:
            expected[f"variants.{name}"] = f"the same settings as variants.{kept[changes]}"
        else:
            kept[changes] = name
    event("reported" if expected else "validates")
    if not expected:
        assert len(validate_parameters(tree).variants) == len(variants)
        return
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(tree)
    reported = _reported(error.value)
    assert set(reported) == set(expected), str(error.value)
    assert all(expected[key] in line for key, line in reported.items()), str(error.value)


def test_a_variant_override_of_a_shared_setting_names_the_fix():
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(deep_merge(BASE, {"variants": {
            "bigger_world": {"data": {"world": {"n_train": 500}}}}}))
    assert str(error.value).splitlines()[1:] == [
        "  variants.bigger_world.data.world.n_train: a variant runs only the recipe's stages "
        "(alignment, advance, knowledge, instruction, preference) and evaluation, and shares "
        "the data tables, tokenizer and backbones with the top-level run, so this override "
        "changes nothing; set it at the top level, or remove it from the variant"]


def test_the_examples_of_parameters_variants_yml_change_something():
    # The examples conf/base/parameters_variants.yml gives in its comment.
    project = validate_parameters(deep_merge(BASE, {"variants": {
        "low_lr": {"sft": {"knowledge": {"lr": 5.0e-4}}}, "seed_1": {"runtime": {"seed": 1}}}}))
    assert sorted(project.variants) == ["low_lr", "seed_1"]
