"""The SFT data experiments: tables, reuse by identity, the three experiments' logic and the
pipeline's wiring (the trainer and the evaluation faked; tests/test_selection_e2e.py runs them
for real on the micro world)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sail_pipeline.engine import chain
from sail_pipeline.engine import experiment as engine_experiment
from sail_pipeline.engine import stage as engine_stage
from sail_pipeline.engine.experiment import point_row
from sail_pipeline.experiments.selection import point
from sail_pipeline.experiments.selection.experiments import (
    ALL_IN_ONE,
    AVERAGE,
    CURRICULUM,
    Phase,
    SelectionSizeError,
    check_sizes,
    compose,
    composition_effects,
    composition_grid,
    composition_variants,
    incremental_grid,
    incremental_trajectory,
    keeps,
    kendall_tau,
    quality_grid,
    quality_ranking,
    schedule_counts,
    schedule_grid,
    schedule_tables,
    tau_intervals,
)
from sail_pipeline.schema import HARMFUL_CANDIDATES, InvalidParameters, MixtureParams
from sail_pipeline.schema.selection import (
    CandidateQualityParams,
    CompositionParams,
    IncrementalParams,
)
from tests.test_pipelines import micro_params, run_in_memory

HELPFUL = {"general_vqa": 3.0, "probes": 2.0, "counting": 1.0, "detailed_captions": 1.5,
           "multi_turn": 1.0, "text_only": 0.2, "ocr_vqa": 0.0, "hard_multi_turn": 0.5}
HARM = {"wrong_answers": -6.0, "other_image": -4.0, "wrong_format": -5.0}


def _table(name: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{name}-{i}" for i in range(n)], "image": [None] * n,
                         "messages": [json.dumps([{"role": "user", "content": f"{name} {i}"},
                                                  {"role": "assistant", "content": "x"}])
                                      for i in range(n)],
                         "n_tokens": [20] * n})


def _world(n: int = 400) -> dict[str, pd.DataFrame]:
    return {name: _table(name, n) for name in [*HELPFUL, *HARM]}


def fake_train(noise: float = 0.3):
    """A 'model' whose average rises with the share of helpful rows and falls with harm, plus
    seeded noise; records every call."""
    calls: list[tuple[str, int, int]] = []

    def train(label: str, table: pd.DataFrame, seed: int) -> dict:
        calls.append((label, len(table), seed))
        share = table["source"].value_counts(normalize=True)
        score = 30 + sum(share.get(s, 0.0) * w for s, w in {**HELPFUL, **HARM}.items()) * 5 \
            + np.log(len(table)) + np.random.default_rng([seed, len(table)]).normal(0, noise)
        return {"scores": {AVERAGE: float(score)}, "identity": label, "reused": False}

    train.calls = calls  # type: ignore[attr-defined]
    return train


def make(label, table, seed, /, train=None, **fields):
    """A point that carries its table (or phases) to the planted scorer instead of a chain."""
    return SimpleNamespace(label=label, table=table, seed=seed, fields=fields)


def drive(grid, train) -> pd.DataFrame:
    """The grid's points table, each point scored by the planted `train`."""
    return pd.DataFrame([point_row(point, result) for point, result in
                         engine_experiment.drive(grid, lambda p: train(p.label, p.table, p.seed))])


def test_compose_is_nested_reproducible_and_names_sources():
    tables = _world()
    base = compose(tables, {"probes": 30, "general_vqa": 20}, seed=0)
    again = compose(tables, {"probes": 30, "general_vqa": 20}, seed=0)
    bigger = compose(tables, {"probes": 30, "general_vqa": 20, "counting": 10}, seed=0)
    halved = compose(tables, {"probes": 15, "general_vqa": 20}, seed=0)
    assert base.equals(again) and len(base) == 50 and base["id"].is_unique
    assert set(base["id"]) < set(bigger["id"]) and set(halved["id"]) < set(base["id"])
    assert not set(compose(tables, {"probes": 30}, seed=1)["id"]) == set(
        compose(tables, {"probes": 30}, seed=0)["id"])
    with pytest.raises(SelectionSizeError, match="probes has 400 rows, 500"):
        compose(tables, {"probes": 500}, seed=0)


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_quality_ranks_candidates_and_measures_stability_across_sizes():
    train = fake_train()
    params = CandidateQualityParams(candidates=["general_vqa", "probes", "wrong_answers", "text_only"],
                           sizes=[50, 100, 200])
    points = drive(quality_grid(params, [0, 1, 2], _world(), make), train)
    assert len(points) == 4 * 3 * 3 == len(train.calls)
    stats, taus = quality_ranking(points)
    ranks = stats[stats["size"] == 200].set_index("candidate")["rank"]
    assert ranks["general_vqa"] == 1 and ranks["wrong_answers"] == 4
    assert taus.loc[50, 200] == pytest.approx(1.0)  # the planted order is stable


def test_composition_halves_each_group_and_pairs_the_change_by_seed():
    params = CompositionParams(base=MixtureParams(size=200, sources={
        "probes": 0.5, "counting": 0.3, "text_only": 0.2}), action="halve")
    groups = {"probes": "general", "counting": "math", "text_only": "text"}
    variants = composition_variants(params, groups)
    assert variants["halve_general"] == {"probes": 50, "counting": 60, "text_only": 40}
    assert set(variants) == {"base", "halve_general", "halve_math", "halve_text"}
    points = drive(composition_grid(params, [0, 1, 2], _world(), groups, make),
                   fake_train(noise=0.0))
    effects = composition_effects(points).set_index("variant")
    # Halving the most helpful group costs the most; every change has a spread over 3 seeds.
    assert effects["delta_mean"].idxmin() == "halve_general"
    assert effects["seeds"].eq(3).all()
    assert (effects["rows_removed"] == 200 - effects["rows"]).all()
    assert effects["delta_per_100_rows"].to_numpy() == pytest.approx(
        (effects["delta_mean"] * 100 / effects["rows_removed"]).to_numpy())
    assert (effects["delta_lo"] <= effects["delta_mean"]).all()
    dropped = composition_variants(params.model_copy(update={"action": "drop"}), groups)
    assert dropped["drop_math"]["counting"] == 0


def test_individual_select_rejects_planted_harm_and_keeps_what_helps():
    params = IncrementalParams(
        base=MixtureParams(size=100, sources={"probes": 0.5, "text_only": 0.5}),
        candidates=["wrong_answers", "general_vqa", "other_image", "wrong_format",
                    "detailed_captions"], rows_per_candidate=100)
    train = fake_train(noise=0.3)
    points = drive(incremental_grid(params, [0, 1, 2], _world(), make, 0.05), train)
    trajectory, selected = incremental_trajectory(points, params, 0.05)
    assert not set(selected) & set(HARMFUL_CANDIDATES)
    assert "general_vqa" in selected
    assert list(trajectory["candidate"]) == ["base", *params.candidates]
    assert len(points) == 3 * (1 + len(params.candidates))
    # Kept exactly when the one-sided lower bound of the paired gain clears min_gain.
    tried = trajectory.iloc[1:]
    assert (tried["kept"] == (tried["delta_lo"] > 0)).all()
    strict_params = params.model_copy(update={"min_gain": 100.0})
    strict, _ = incremental_trajectory(
        drive(incremental_grid(strict_params, [0, 1, 2], _world(), make, 0.05), fake_train()),
        strict_params, 0.05)
    assert not strict["kept"][1:].any()


def test_the_keep_rule_is_a_paired_one_sided_test_at_alpha():
    params = IncrementalParams(base=MixtureParams(size=100, sources={"probes": 1.0}),
                               candidates=["probes"], rows_per_candidate=10)
    rng = np.random.default_rng(0)
    runs, seeds = 4000, 3
    base = rng.normal(0.5, 0.05, size=(runs, 1)) + rng.normal(0, 0.02, size=(runs, seeds))
    useless = base + rng.normal(0, 0.02, size=(runs, seeds))  # the seeds' own noise only
    helpful = useless + 0.05
    false_keeps = np.mean([keeps(b, u, params, 0.05)[0] for b, u in zip(base, useless, strict=True)])
    found = np.mean([keeps(b, h, params, 0.05)[0] for b, h in zip(base, helpful, strict=True)])
    assert false_keeps == pytest.approx(0.05, abs=0.015)
    assert found > 0.5
    assert not keeps(base[0][:1], helpful[0][:1], params, 0.05)[0]  # one seed: no test


def test_every_table_is_checked_against_its_sources_before_training():
    rows = {name: 400 for name in [*HELPFUL, *HARM]}
    quality = CandidateQualityParams(candidates=["probes"], sizes=[100, 800])
    composition = CompositionParams(base=MixtureParams(size=1000, sources={"probes": 1.0}))
    incremental = IncrementalParams(base=MixtureParams(size=100, sources={"probes": 1.0}),
                                    candidates=["probes"], rows_per_candidate=350)
    with pytest.raises(SelectionSizeError) as error:
        check_sizes(quality, composition, incremental, rows)
    message = str(error.value)
    assert "selection.quality.sizes" in message and "selection.composition.base.size" in message
    assert "selection.incremental.rows_per_candidate: probes has 400 rows, 450" in message


def test_schedule_splits_one_draw_across_the_stages_and_all_in_one_is_their_union():
    project = micro_params()
    mixtures = {stage: getattr(project.sft.mixtures, stage)
                for stage in ("knowledge", "instruction", "preference")}
    world = _world(400)
    counts = schedule_counts(130, mixtures)
    assert sum(sum(c.values()) for c in counts.values()) == 130
    assert [sum(c.values()) for c in counts.values()] == [100, 20, 10]  # 2000 : 400 : 200
    small, large = (schedule_tables(n, mixtures, world, seed=3) for n in (130, 260))
    ids = [set(t["id"]) for t in small.values()]
    assert sum(len(i) for i in ids) == 130 == len(set().union(*ids))  # no row twice
    union = set().union(*ids)
    assert union <= set().union(*(set(t["id"]) for t in large.values()))  # nested in size
    assert schedule_tables(130, mixtures, world, seed=3)["knowledge"].equals(small["knowledge"])
    assert set(schedule_tables(130, mixtures, world, seed=4)["knowledge"]["id"]) != ids[0]
    stage_train = {stage: project.selection.train for stage in mixtures}
    seen = []

    def train(label, phases, seed):
        seen.append((label, [p.stage for p in phases], [len(p.table) for p in phases]))
        return {"scores": {AVERAGE: 1.0}, "identity": label}

    from sail_pipeline.schema.selection import ScheduleParams

    points = drive(schedule_grid(ScheduleParams(sizes=[130, 260, 520]), [0, 1], mixtures,
                                 stage_train, world, make), train)
    assert len(points) == 12 and set(points["variant"]) == {CURRICULUM, ALL_IN_ONE}
    assert seen[0] == ("curriculum n=130 seed=0", ["knowledge", "instruction", "preference"],
                       [100, 20, 10])
    assert seen[1] == ("all_in_one n=130 seed=0", ["knowledge"], [130])
    with pytest.raises(InvalidParameters, match="selection.schedule.sizes"):
        micro_params(selection={"schedule": {"sizes": [10, 20]}})
    with pytest.raises(SelectionSizeError, match="selection.schedule.sizes: the largest size"):
        check_sizes(project.selection.quality, project.selection.composition,
                    project.selection.incremental, {n: 30 for n in world},
                    ScheduleParams(sizes=[100, 200, 400]), mixtures)


def test_a_point_with_the_same_inputs_is_reused_and_a_changed_one_trains(tmp_path,
                                                                        monkeypatch, caplog):
    trained: list[str] = []

    def fake_train_stage(stage, settings, runtime, workdir, train_data, eval_data, **kw):
        trained.append(train_data)
        Path(workdir, "hf").mkdir(parents=True)
        return {"hf_dir": f"{workdir}/hf", "summary": {"wall_seconds": 1.0,
                                                       "eval_loss_after": 0.5}}

    monkeypatch.setattr(engine_stage, "train", fake_train_stage)
    monkeypatch.setattr(chain, "evaluate",
                        lambda hf, evaluation, work: {f"{evaluation.label}/average": 42.0})
    for name in ("weights", "bench.parquet", "eval.parquet"):
        (tmp_path / name).write_text(name)
    start = point.StartPoint(str(tmp_path / "weights"), str(tmp_path / "bench.parquet"),
                             str(tmp_path / "eval.parquet"))
    project = micro_params()
    table = _world(20)["probes"].assign(source="probes")
    args = (project.selection.evaluation, start, project.runtime, tmp_path / "store")

    def one(rows: pd.DataFrame) -> list[Phase]:
        return [Phase("knowledge", project.selection.train, rows)]

    first = point.run_sft_point("a", one(table), 0, *args)
    second = point.run_sft_point("a", one(table), 0, *args)
    assert not first["reused"] and second["reused"] and len(trained) == 1
    assert second["scores"] == {"sft/average": 42.0}
    point.run_sft_point("a", one(table.iloc[1:]), 0, *args)  # another table
    point.run_sft_point("a", one(table), 1, *args)            # another seed
    assert len(trained) == 3
    # The same rows in two phases are another point, trained phase after phase.
    two = [Phase("knowledge", project.selection.train, table.iloc[:10]),
           Phase("instruction", project.sft.instruction, table.iloc[10:])]
    result = point.run_sft_point("b", two, 0, *args)
    assert not result["reused"] and len(trained) == 5
    assert result["stages"] == ["knowledge", "instruction"] and result["rows"] == 20
    assert not list((tmp_path / "store").glob("*.partial-*"))

    # A run killed mid-point left its folder; the next run removes it (its pid is gone), says
    # so, and trains the point; a folder of a live process (the same point, run beside this
    # one) is left alone.
    import logging
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    third = [Phase("knowledge", project.selection.train, table.iloc[:7])]
    identity = chain.chain_identity(
        point.sft_chain(third, 0, project.selection.evaluation, start), project.runtime)
    killed = tmp_path / "store" / f"{identity}.partial-{gone.pid}"
    (killed / "sft_0_knowledge").mkdir(parents=True)
    live = tmp_path / "store" / f"{identity}.partial-1"  # pid 1 is always alive
    live.mkdir()
    with caplog.at_level(logging.INFO, logger="sail_pipeline.engine.store"):
        assert not point.run_sft_point("c", third, 0, *args)["reused"]
    assert not killed.exists() and live.exists()
    assert f"removed the unfinished work of a killed run (pid {gone.pid})" in caplog.text


def test_selection_parameters_fail_at_start_naming_the_key():
    with pytest.raises(InvalidParameters, match="selection: unknown candidate set.*'nope'"):
        micro_params(selection={"quality": {"candidates": ["nope"]}})
    with pytest.raises(InvalidParameters, match="selection.quality.sizes"):
        micro_params(selection={"quality": {"sizes": [40, 20]}})
    with pytest.raises(InvalidParameters, match="selection.seeds"):
        micro_params(selection={"seeds": []})


def test_selection_pipeline_runs_every_experiment_and_shares_the_base(
        tmp_path, small_world, world_tokenizer, monkeypatch):
    from sail_pipeline.pipelines.selection.pipeline import create_pipeline as selection

    project = micro_params(selection={"seeds": [0, 1, 2], "incremental": {
        "candidates": ["wrong_answers", "multi_turn"]}})
    calls: list[str] = []

    schedule_rows: dict[tuple[int, str], list[set[str]]] = {}

    def fake_point(point, runtime, store, tracker=None):
        """The engine's point, scored by a planted truth instead of trained."""
        label, seed = point.label, point.chain.seed
        phases = [step.train.rows for step in point.chain.steps]
        table = pd.concat(phases)
        source = table["id"].str.split("/").str[0]  # compose() names each row by its set
        identity = hashlib.sha256(("|".join(f"{s.stage}:{'|'.join(s.train.rows['id'])}"
                                            for s in point.chain.steps) + str(seed)).encode()
                                  ).hexdigest()[:8]
        reused = identity in calls
        calls.append(identity)
        harm = source.isin(HARMFUL_CANDIDATES).mean()
        chats = (source == "multi_turn").mean()
        score = 40.0 - 30 * harm + 5 * chats + seed * 0.1
        if label.startswith((CURRICULUM, ALL_IN_ONE)):
            schedule_rows.setdefault((seed, label.split()[1]), []).append(set(table["id"]))
            # A planted truth: the curriculum is linear in the rows, all-in-one logarithmic.
            score = (40 + 0.5 * len(table)) if len(phases) > 1 else 10 + 8 * np.log(len(table))
        # One task, free text (no chance level): the verdict average is its score, 0–1.
        return {"scores": {AVERAGE: score, "sft/caption": score / 100}, "identity": identity,
                "reused": reused, "timing": {"total_seconds": 0.0}}

    monkeypatch.setattr(engine_experiment, "run_point", fake_point)
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")
    benchmark = tmp_path / "benchmark.parquet"
    pd.DataFrame({"question_type": ["caption"], "answer": ["a"], "choices": ["[]"],
                  "group_id": ["g"]}).to_parquet(benchmark)
    # The sets the SFT mixtures use are the sft pipeline's; a run after `make run` finds them.
    from sail_pipeline.pipelines.sft.pipeline import candidate_pipeline

    pipeline = candidate_pipeline(list(dict.fromkeys([
        *project.selection.candidate_names(), *project.sft.candidate_names()]))) + selection(project)
    out = run_in_memory(pipeline, project, tmp_path, {
        "world_scenes": small_world.scenes, "world_vqa": small_world.vqa,
        "world_conversations": small_world.conversations, "world_probes": small_world.probes,
        "tokenizer": str(tmp_path / "tokenizer"), "advance_model": {"hf_dir": "/advance/hf"},
        "benchmark": str(benchmark), "knowledge_eval": "/knowledge_eval.parquet",
        "selection_store": str(tmp_path / "store")})
    assert out["selection_incremental_selected"]["selected"] == ["multi_turn"]
    trajectory = out["selection_incremental_trajectory"]
    assert list(trajectory["kept"]) == [True, False, True]
    # The base mixture is the same table in composition and incremental: trained once.
    composition_base = out["selection_composition_points"].query("variant == 'base'")
    incremental_base = out["selection_incremental_points"].query("step == 'base'")
    assert list(composition_base["identity"]) == list(incremental_base["identity"])
    assert len(out["selection_quality_points"]) == 2 * 2 * 3
    # Curriculum vs all-in-one: both schedules at every size and seed, on the same rows.
    points = out["selection_schedule_points"]
    assert len(points) == 2 * 3 * 3
    assert set(points.query("variant == 'curriculum'")["stages"]) == {
        "knowledge+instruction+preference"}
    assert set(points.query("variant == 'all_in_one'")["stages"]) == {"knowledge"}
    for rows in schedule_rows.values():
        assert len(rows) == 2 and rows[0] == rows[1]
    report = out["selection_schedule_report"]
    assert report.startswith("# SFT schedule: curriculum vs all-in-one")
    verdicts = {line.split("|")[1].strip(): line.split("|")[3].strip()
                for line in report.splitlines() if line.startswith("| The curriculum")}
    assert list(verdicts.values()) == ["reproduced", "reproduced"], verdicts
    taus = out["selection_quality_tau"]
    assert list(taus.columns) == ["size_a", "size_b", "tau", "tau_lo", "tau_hi", "seeds"]
    assert (taus["size_a"] < taus["size_b"]).all()


def test_the_design_pages_worked_example_is_the_registrys_code():
    """docs/design.md's "Adding an experiment" shows `lr_sweep`'s grid and analysis as they are."""
    import inspect

    from sail_pipeline.experiments.selection import registry

    readme = (Path(__file__).resolve().parents[1] / "docs/design.md").read_text()
    for function in (registry._lr_sweep_grid, registry._lr_sweep):
        assert inspect.getsource(function) in readme, function.__name__
    assert registry.SELECTION_EXPERIMENTS["lr_sweep"].outputs == ("selection_lr_sweep_points",)


def test_a_grid_of_the_lr_sweep_drives_with_a_planted_scorer():
    """The worked example's grid and analysis on planted scores: the best factor is found."""
    from sail_pipeline.experiments.selection import registry

    project = micro_params()
    tables = _world(200)
    groups = {name: "general" for name in tables}
    inputs = registry.SelectionInputs(project.selection, project.sft, tables, groups, make)
    best = {0.5: 1.0, 1.0: 3.0, 2.0: 2.0}
    points = drive(registry._lr_sweep_grid(inputs),
                   lambda label, table, seed: {"scores": {AVERAGE: best[float(
                       label.split("x")[1].split()[0])]}})
    assert sorted(points["lr_factor"]) == [0.5, 1.0, 2.0]
    outputs = registry._lr_sweep(points.assign(seconds=0.0), inputs)
    assert max(outputs["metrics"], key=outputs["metrics"].get) == "selection/lr_sweep/x1.0"


def test_kendalls_tau_has_an_interval_that_resamples_whole_seeds():
    rng = np.random.default_rng(3)
    worth = {"a": 0.5, "b": 0.4, "c": 0.3, "d": 0.2}
    rows = [{"candidate": c, "size": size, "seed": seed, "sft/average": w + rng.normal(0, noise)}
            for noise, sizes in ((0.001, (10, 20)), (0.2, (40,)))
            for c, w in worth.items() for size in sizes for seed in range(5)]
    taus = tau_intervals(pd.DataFrame(rows)).set_index(["size_a", "size_b"])
    stable = taus.loc[(10, 20)]
    assert stable["tau"] == 1.0 and stable["tau_lo"] == 1.0 and stable["seeds"] == 5
    noisy = taus.loc[(10, 40)]  # size 40's ranking is mostly noise: a wide interval
    assert noisy["tau_hi"] - noisy["tau_lo"] > 0.5
    one_seed = tau_intervals(pd.DataFrame(rows).query("seed == 0"))
    assert one_seed["tau_lo"].isna().all() and one_seed["tau"].notna().all()


def test_two_tables_of_one_seed_list_the_rows_they_share_in_the_same_order():
    world = _world()
    base = compose(world, {"probes": 60, "counting": 40}, seed=3)
    halved = compose(world, {"probes": 30, "counting": 40}, seed=3)
    shared = set(base["id"]) & set(halved["id"])
    assert len(shared) == 70
    assert [i for i in base["id"] if i in shared] == [i for i in halved["id"] if i in shared]
    other_seed = compose(world, {"probes": 60, "counting": 40}, seed=4)
    assert list(other_seed["id"]) != list(base["id"])
