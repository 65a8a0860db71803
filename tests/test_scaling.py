"""The sweep's definition, pools, nested subsamples, point identity and commands (no training:
the end-to-end sweep is in test_scaling_e2e.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.engine.chain import chain_identity, prefix_identities
from sail_pipeline.experiments.scaling.plan import Point, plan_points, point_command
from sail_pipeline.experiments.scaling.point import (
    SharedInputs,
    job_chain,
    point_chain,
    settings_digest,
    sweep_prefixes,
)
from sail_pipeline.experiments.scaling.pool import (
    PoolTooSmall,
    build_pools,
    check_sizes,
    point_pairs,
)
from sail_pipeline.schema import (
    InvalidParameters,
    RuntimeParams,
    ScalingParams,
    StatisticsParams,
    validate_parameters,
)

_TRAIN = {"epochs": 1, "lr": 1e-3}
SWEEP = {"sizes": [10, 20, 40], "seeds": [0, 1, 2], "alignment": _TRAIN, "advance": _TRAIN,
         "sft": {"steps": 2, "lr": 1e-3},
         "variants": ["recaption_filtered", "alt_text", "noisy_expansion", "alignment_only"]}


def _sweep(**changes) -> ScalingParams:
    return ScalingParams.model_validate(SWEEP | changes)


@pytest.mark.parametrize(("change", "message"), [
    ({"sizes": [10, 40, 20]}, r"scaling\.sizes.*strictly increasing"),
    ({"sizes": [10, 10]}, r"scaling\.sizes.*strictly increasing"),
    ({"sizes": [0, 10]}, r"scaling\.sizes.*positive"),
    ({"seeds": []}, r"scaling\.seeds.*at least one seed"),
    ({"variants": ["recaption", "nonsense"]}, r"scaling\.variants.*unknown variant.*nonsense"),
    ({"alignment": {"lr": 1e-3}}, r"scaling\.alignment.*exactly one budget"),
])
def test_bad_sweep_definitions_fail_naming_the_key(change, message):
    params = {"data": {"world": {"n_train": 400}}, "scaling": SWEEP | change}
    with pytest.raises(InvalidParameters, match=message):
        validate_parameters(params)


def test_a_valid_sweep_plans_every_point_with_its_own_command():
    sweep = _sweep()
    points = plan_points(sweep)
    assert len(points) == 4 * 3 * 3
    assert len({p.namespace for p in points}) == len(points)
    point = Point("recaption", 4000, 1)
    assert point.label == "recaption N=4000 seed=1"
    assert point_command(point) == "kedro run --pipelines=scaling --namespaces=recaption_n4000_s1"
    assert point_command(point, "micro").endswith("--env=micro")


def _candidates(n: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"w:{i:03d}" for i in range(n)]
    candidates = pd.concat([
        pd.DataFrame({"id": ids, "source": "recaption", "caption": [
            "" if i % 10 == 0 else f"a red circle {i}" for i in range(n)]}),
        pd.DataFrame({"id": ids, "source": "alt_text", "caption": [f"alt {i}" for i in range(n)]}),
    ], ignore_index=True)
    kept = candidates[["id", "source"]].assign(kept=[i % 2 == 1 for i in range(2 * n)])
    return candidates, kept


def test_pools_count_every_dropped_caption_and_apply_the_filter():
    candidates, kept = _candidates()
    pairs, accounting = build_pools(candidates, kept, {}, _sweep())
    rows = accounting.set_index("pool")
    # 10 empty recaptions are dropped from every pool of recaptions, and counted
    assert rows.loc["recaption_filtered", "empty"] == 10
    assert rows.loc["recaption_filtered", "pairs"] + rows.loc["recaption_filtered", "empty"] + \
        rows.loc["recaption_filtered", "rejected_by_filter"] == 100
    filtered = pairs[pairs["pool"] == "recaption_filtered"]
    assert set(filtered["id"]) <= set(kept[kept["kept"] & (kept["source"] == "recaption")]["id"])
    assert rows.loc["alt_text", "pairs"] == 100


def test_a_pool_smaller_than_the_grid_fails_before_training_naming_sizes():
    candidates, kept = _candidates()
    _, accounting = build_pools(candidates, kept, {}, _sweep(sizes=[10, 60]))
    with pytest.raises(PoolTooSmall, match=r"scaling\.sizes.*60.*recaption_filtered has 50"):
        check_sizes(accounting, _sweep(sizes=[10, 60]))
    check_sizes(accounting, _sweep(sizes=[10, 50]))  # 50 filtered pairs hold 50


def test_subsamples_are_nested_across_sizes_and_differ_across_seeds():
    candidates, kept = _candidates()
    pairs, _ = build_pools(candidates, kept, {}, _sweep())
    small = point_pairs(pairs, "recaption_filtered", 10, 0, 10)
    large = point_pairs(pairs, "recaption_filtered", 40, 0, 10)
    assert list(large["id"][:10]) == list(small["id"])
    other_seed = point_pairs(pairs, "recaption_filtered", 10, 1, 10)
    assert set(other_seed["id"]) != set(small["id"])
    with pytest.raises(PoolTooSmall, match="needs 51 pairs"):
        point_pairs(pairs, "recaption_filtered", 51, 0, 10)


def test_noisy_expansion_adds_only_alt_text_beyond_the_smallest_size():
    candidates, kept = _candidates()
    pairs, _ = build_pools(candidates, kept, {}, _sweep())
    clean = point_pairs(pairs, "recaption_filtered", 10, 2, 10)
    expanded = point_pairs(pairs, "noisy_expansion", 40, 2, 10)
    assert list(expanded["id"][:10]) == list(clean["id"])
    assert list(expanded["caption"][:10]) == list(clean["caption"])
    assert expanded["caption"][10:].str.startswith("alt ").all()
    assert expanded["id"].is_unique
    assert list(point_pairs(pairs, "noisy_expansion", 20, 2, 10)["id"]) == \
        list(expanded["id"][:20])


def _shared(tmp_path) -> SharedInputs:
    paths = {}
    for name in SharedInputs.__dataclass_fields__:
        path = tmp_path / name
        path.write_text(name)
        paths[name] = str(path)
    return SharedInputs(**paths)


def identity(point, pairs, images, sweep, shared, preset) -> str:
    return chain_identity(point_chain(point, pairs, images, sweep, shared, preset),
                          RuntimeParams())


def test_identity_follows_what_decides_the_result_and_nothing_else(tmp_path):
    candidates, kept = _candidates()
    pairs, _ = build_pools(candidates, kept, {}, _sweep())
    shared = _shared(tmp_path)
    point = Point("recaption_filtered", 10, 0)
    chosen = point_pairs(pairs, point.variant, point.n, point.seed, 10)
    images = pd.Series({i: f"png-{i}".encode() for i in candidates["id"]})
    first = identity(point, chosen, images, _sweep(), shared, "tiny")
    assert identity(point, chosen, images, _sweep(), shared, "tiny") == first
    # how often a stage logs does not change what it computes
    quieter = _sweep(alignment=_TRAIN | {"log_every": 99})
    assert identity(point, chosen, images, quieter, shared, "tiny") == first
    # ... a larger grid does not either: the point's own pairs are the same
    assert identity(point, chosen, images, _sweep(sizes=[10, 20, 40, 80]), shared, "tiny") == first
    changed = [
        identity(point, chosen, images, _sweep(alignment=_TRAIN | {"lr": 5e-4}), shared, "tiny"),
        identity(point, chosen.assign(caption="other"), images, _sweep(), shared, "tiny"),
        identity(point, chosen, images.replace(images[chosen["id"][0]], b"x"), _sweep(), shared,
                 "tiny"),
        identity(Point("recaption_filtered", 10, 1), chosen, images, _sweep(), shared, "tiny"),
        identity(point, chosen, images, _sweep(), shared, "llava-tiny"),
    ]
    (tmp_path / "llm").write_text("other weights")
    changed.append(identity(point, chosen, images, _sweep(), _shared_again(tmp_path), "tiny"))
    assert first not in changed and len(set(changed)) == len(changed)
    assert settings_digest(point, _sweep(), "tiny") != settings_digest(
        point, _sweep(sft={"steps": 3, "lr": 1e-3}), "tiny")


def test_frozen_llm_shares_exactly_its_alignment_with_the_recipe_and_nothing_more(tmp_path):
    candidates, kept = _candidates()
    # as in parameters_scaling.yml: Advance trains the LLM too, frozen_llm keeps the recipe's
    sweep = _sweep(variants=["recaption_filtered", "frozen_llm", "alt_text", "alignment_only"],
                   sizes=[10, 20], advance=_TRAIN | {"trainable": ["vision", "projector", "llm"]})
    pairs, _ = build_pools(candidates, kept, {}, sweep)
    images = pd.Series({i: f"png-{i}".encode() for i in candidates["id"]})
    points = plan_points(sweep)
    shared = sweep_prefixes(points, sweep, _shared(tmp_path), "tiny", RuntimeParams(), pairs,
                            images)
    alignments = {(p.n, p.seed): prefix_identities(job_chain(p, sweep, _shared(tmp_path), "tiny",
                                                             pairs, images), RuntimeParams())[0]
                  for p in points if p.variant == "frozen_llm"}
    # one Alignment per (N, seed), shared by the recipe's point and the frozen-LLM point
    assert shared == set(alignments.values()) and len(shared) == 2 * 3


def test_the_steps_control_trains_every_size_for_the_largest_sizes_passes(tmp_path):
    candidates, kept = _candidates()
    sweep = _sweep(variants=["recaption_filtered", "steps_control"], sizes=[10, 20, 40])
    pairs, _ = build_pools(candidates, kept, {}, sweep)
    images = pd.Series({i: f"png-{i}".encode() for i in candidates["id"]})
    chains = {(p.variant, p.n): job_chain(p, sweep, _shared(tmp_path), "tiny", pairs, images)
              for p in plan_points(sweep) if p.seed == 0}
    for n in (10, 20, 40):
        control = chains[("steps_control", n)]
        # The same pairs, 40 / n passes over them: as many samples seen as the largest size.
        assert [s.settings.epochs for s in control.steps[:2]] == [40 / n, 40 / n]
        assert [s.train.digest() for s in control.steps] == [
            s.train.digest() for s in chains[("recaption_filtered", n)].steps]
    # At the largest size it is the recipe's point: one chain, trained once.
    assert chain_identity(chains[("steps_control", 40)], RuntimeParams()) == chain_identity(
        chains[("recaption_filtered", 40)], RuntimeParams())
    assert chain_identity(chains[("steps_control", 10)], RuntimeParams()) != chain_identity(
        chains[("recaption_filtered", 10)], RuntimeParams())
    with pytest.raises(ValueError, match="scaling.alignment an epochs budget"):
        _sweep(variants=["steps_control"], alignment={"steps": 3, "lr": 1e-3})


def test_a_point_that_is_another_points_chain_names_itself_in_its_result(monkeypatch):
    """At the smallest N, `noisy_expansion` is the recipe's point (the same pairs): it reuses
    the stored result, and must still be itself there, or the fit calls it stale (the default
    sweep did, for 3 of its 105 points)."""
    from sail_pipeline.experiments.scaling import point as scaling_point

    sweep = _sweep()
    first, second = Point("recaption_filtered", 10, 0), Point("noisy_expansion", 10, 0)
    stored = {"identity": "one chain", "scores": {"sft/average": 0.5}, "tokens": 7,
              "reused": True, **scaling_point.point_fields(first, sweep, "tiny")}
    monkeypatch.setattr(scaling_point, "run_stored", lambda *args, **kwargs: dict(stored))
    result = scaling_point.run_point(second, None, sweep, RuntimeParams(), "tiny", "store")
    assert result["namespace"] == "noisy_expansion_n10_s0"
    assert result["variant"] == "noisy_expansion" and result["expansion"] == "alt_text"
    assert result["settings_digest"] == settings_digest(second, sweep, "tiny") != \
        stored["settings_digest"]
    assert result["scores"] == stored["scores"] and result["tokens"] == 7


def _shared_again(tmp_path) -> SharedInputs:
    return SharedInputs(**{name: str(tmp_path / name) for name in SharedInputs.__dataclass_fields__})


def test_a_failed_point_is_recorded_and_named_by_the_fit_not_fatal(tmp_path, monkeypatch):
    from sail_pipeline.pipelines.scaling import nodes
    from sail_pipeline.schema import RuntimeParams

    candidates, kept = _candidates()
    pairs, accounting = build_pools(candidates, kept, {}, _sweep())
    manifest = pd.DataFrame({"id": candidates["id"].unique()}).assign(
        sha256=lambda t: "sha-" + t["id"], image=b"png")
    shared = _shared(tmp_path)

    def trainer_dies(*args, **kwargs):
        raise RuntimeError("stage alignment failed: the trainer exited with 1")

    from sail_pipeline.experiments.scaling import point as scaling_point

    monkeypatch.setattr(scaling_point, "run_point", trainer_dies)
    point = Point("alt_text", 10, 0)
    inputs = (pairs, manifest, shared.tokenizer, {"hf_dir": shared.llm},
              {"hf_dir": shared.vision}, shared.benchmark, shared.alignment_eval,
              shared.advance_eval, shared.sft_train, shared.sft_eval, _sweep(), "tiny",
              RuntimeParams(), str(tmp_path / "store"), None)
    result = nodes.point_node(point)(*inputs)
    assert result["failed"] and "trainer exited" in result["error"]
    # The node that runs every point (on Ray, `runtime.points.kind: ray`; here its plain
    # executor) records it the same way, one output per point.
    assert nodes.points_node([point])(*inputs) == (result,)

    stale = {"settings_digest": "from another configuration", "namespace": "alt_text_n20_s0"}
    benchmark = tmp_path / "benchmark.parquet"  # two closed tasks: chance 1/3 and 1/2
    pd.DataFrame({"question_type": ["count", "colour"], "answer": ["one", "red"],
                  "choices": ['["one", "two", "three"]', '["red", "blue"]'],
                  "group_id": ["a", "b"]}).to_parquet(benchmark)
    *_, report, metrics = nodes.fit_node([point, Point("alt_text", 20, 0)])(
        _sweep(), StatisticsParams(), "tiny", str(benchmark), accounting, None, result, stale)
    assert "alt_text_n10_s0 (failed: stage alignment failed: the trainer exited with 1)" in report
    assert "alt_text_n20_s0 (stale: settings or code changed)" in report
    assert metrics == {} and "SFT schedule" not in report
    # When the selection pipeline's `schedule` experiment has run, its verdict joins the report.
    def average(v: str, n: int, s: int) -> float:
        return ((30 + n / 100 if v == "curriculum" else 20 + 3 * np.log(n)) + s * 0.1) / 100

    # count well above its chance (1/3); colour at its chance (1/2) whatever the schedule.
    schedule = pd.DataFrame([{"variant": v, "n": n, "seed": s, "seconds": 1.0,
                              "sft/count": 0.2 + average(v, n, s),
                              "sft/colour": 0.5 + 0.01 * ((s + n // 100) % 3 - 1),
                              "sft/average": 100 * average(v, n, s)}
                             for v in ("curriculum", "all_in_one") for n in (100, 200, 400, 800)
                             for s in range(3)])
    *_, report, _ = nodes.fit_node([point])(_sweep(), StatisticsParams(), "tiny",
                                            str(benchmark), accounting, schedule, result)
    section = report[report.index("## SFT schedule: curriculum vs all-in-one"):]
    assert "### Claims" in section and "curvature difference" in section
    # The claims read the mean of the tasks above chance: count in, colour out.
    assert "| colour | 0.500 |" in section and "no: at chance" in section
    assert "sft/verdict_average" in section
    assert "![sft/average](selection/schedule.png)" in section


def test_on_ray_one_node_runs_every_point_and_writes_each_points_result():
    from sail_pipeline.pipelines.scaling.pipeline import create_pipeline
    from tests.test_pipelines import micro_params

    sweep = {"scaling": {"variants": ["reference"], "sizes": [16, 32], "seeds": [0, 1]}}
    plain = create_pipeline(micro_params(**sweep))
    on_ray = create_pipeline(micro_params(**sweep, runtime={"points": {"kind": "ray"}}))
    results = {f"reference_n{n}_s{s}.scaling_point" for n in (16, 32) for s in (0, 1)}
    assert len([n for n in plain.nodes if "scaling_point" in n.tags]) == 4
    [node] = [n for n in on_ray.nodes if "scaling_points" in n.tags]
    assert set(node.outputs) == results and not [n for n in on_ray.nodes
                                                 if "scaling_point" in n.tags]
    # the fit reads the same results either way
    [fit] = [n for n in on_ray.nodes if n.name == "fit_scaling"]
    assert results <= set(fit.inputs)
