"""`kedro run --pipelines=quality` SIGKILLed while it scores, then run again, in a copy of the
micro project after `kedro run`: the signal groups finished before the kill are not computed
again, and the table equals the uninterrupted run's."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from tests.kills import kill_when
from tests.project import run, start_kedro_run

# Per-caption likelihood batches keep the run scoring long enough to be killed in the middle.
# The batch size does not change a signal's identity, so both runs share the cache.
SLOW = ("--params", "quality.likelihood.batch_size=1")
CACHE = "data/04_feature/quality_cache"


def _finished_groups(project) -> set[str]:
    return {p.parent.name.split("-")[0] for p in (project / CACHE).glob("*/part-*.parquet")}


@pytest.mark.slow
@pytest.mark.faults
def test_a_killed_quality_run_keeps_the_finished_groups_and_ends_equal(project_copy):
    project = project_copy
    whole = pd.read_parquet(project / "data/04_feature/quality_signals.parquet")
    groups = _finished_groups(project)
    shutil.rmtree(project / CACHE)
    kill_when(start_kedro_run(project, "--pipelines=quality", *SLOW),
              lambda: "text" in _finished_groups(project), "the end of the text signals",
              timeout_s=600, group=True)
    finished = _finished_groups(project)
    assert finished < groups, "the run finished scoring before the kill"

    # Wide log lines: rich wraps at 80 columns when it writes to a pipe.
    again = run(project, "kedro", "run", "--pipelines=quality", *SLOW, timeout=600,
                COLUMNS="400")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = again.stdout + again.stderr
    for group in finished:  # what finished before the kill is read, not computed
        assert f"quality signals {group}:" in log
        line = log[log.index(f"quality signals {group}:"):][:200]
        assert "computing 0" in line, line
    assert not list((project / CACHE).glob("*/.part-*.tmp"))
    rerun = pd.read_parquet(project / "data/04_feature/quality_signals.parquet")
    key = ["id", "source"]
    whole, rerun = (t.sort_values(key).reset_index(drop=True) for t in (whole, rerun))
    assert list(rerun[key].itertuples(index=False)) == list(whole[key].itertuples(index=False))
    for column in whole.columns:
        if pd.api.types.is_float_dtype(whole[column]):
            # The likelihood's batches differ (1 against the micro run's 32): float noise.
            np.testing.assert_allclose(rerun[column], whole[column], atol=1e-4, equal_nan=True,
                                       err_msg=column)
        else:
            assert rerun[column].equals(whole[column]), column
