"""Resume reads DeepSpeed's checkpoints without unpickling arbitrary objects.

DeepSpeed's own loader calls `torch.load(weights_only=False)`, which runs whatever code a
pickle names. A stage's checkpoint holds tensors, Python numbers and containers, NumPy arrays
(the RNG state) and three small DeepSpeed classes; those are allow-listed and everything else
is refused. A file that cannot be read this way (cut off by a kill during a save, tampered with,
or not a checkpoint of this project) stops the stage with an error naming it and the folder to
delete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sail_pipeline.errors import UserError


class UnreadableCheckpoint(UserError, RuntimeError):
    """A checkpoint file the stage cannot resume from."""


def _allowed() -> list[Any]:
    import numpy as np
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # NumPy's RNG state: an array of uint32 (what `_rng_state` saves).
    return [np.ndarray, np.dtype, np.dtypes.UInt32DType, np._core.multiarray._reconstruct,
            LossScaler, ZeroStageEnum, fragment_address]


def load(path: str, map_location: Any = None) -> Any:
    """`torch.load(weights_only=True)` with the classes a DeepSpeed checkpoint holds."""
    import torch

    try:
        with torch.serialization.safe_globals(_allowed()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        folder = Path(path).parent.parent
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise UnreadableCheckpoint(
            f"{path} cannot be resumed from ({type(error).__name__}: {reason}). It may have been "
            f"cut off by a kill or a full disk during a save, or it is not a checkpoint this "
            f"project wrote. Delete {folder} to start the stage afresh.") from error


def use_safe_loading(engine: Any) -> None:
    """Route the engine's checkpoint reads through `load`."""
    engine.checkpoint_engine.load = load
