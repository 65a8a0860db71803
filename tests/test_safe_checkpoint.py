"""Resuming reads DeepSpeed checkpoints with weights_only=True: a pickle that names code is
refused without running it, and a cut-off file is named with the folder to delete."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sail_pipeline.training.safe_checkpoint import UnreadableCheckpoint, load


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_like_file_loads_with_its_rng_state(tmp_path):
    path = tmp_path / "checkpoints" / "step4" / "mp_rank_00_model_states.pt"
    path.parent.mkdir(parents=True)
    state = {"step": 4, "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
             "module": {"w": torch.ones(2)}, "before": {"eval_loss": 1.5}}
    torch.save(state, path)
    loaded = load(str(path))
    assert loaded["step"] == 4 and torch.equal(loaded["module"]["w"], torch.ones(2))
    assert np.array_equal(loaded["rng"]["numpy"][1], state["rng"]["numpy"][1])


def test_a_pickle_that_names_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoints" / "step4" / "mp_rank_00_model_states.pt"
    path.parent.mkdir(parents=True)
    torch.save({"step": 4, "x": _Payload(str(marker))}, path)
    with pytest.raises(UnreadableCheckpoint, match=f"{path} cannot be resumed from") as error:
        load(str(path))
    assert not marker.exists()
    assert f"Delete {tmp_path / 'checkpoints'} to start the stage afresh" in str(error.value)


def test_a_cut_off_checkpoint_names_itself(tmp_path):
    path = tmp_path / "checkpoints" / "step8" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    path.parent.mkdir(parents=True)
    torch.save({"step": 8, "w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])  # a kill, or a full disk, during the save
    with pytest.raises(UnreadableCheckpoint, match="cut off by a kill or a full disk"):
        load(str(path))
