"""The point store: a finished chain's result under its identity, reused instead of retrained.

`store/<identity>/result.json` is a point that finished; `store/prefixes/` keeps the
checkpoints that several points start from (`engine.prefix`). A point trains in a
`.partial-<pid>` folder that is renamed when it ends, so a crashed or concurrent run never
leaves a half point that looks finished; the folders of killed runs are removed the next time
the point runs. No Kedro here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sail_pipeline.engine.chain import Chain, ChainResult, chain_identity, run_chain
from sail_pipeline.engine.prefix import PrefixCache
from sail_pipeline.errors import UserError
from sail_pipeline.schema import RuntimeParams

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PREFIXES = "prefixes"  # the shared prefixes' folder in the store (engine.prefix)


class DamagedPoint(UserError, ValueError):
    """A stored point's result that cannot be read."""


def stored_result(store: str | Path, point_id: str) -> dict[str, Any] | None:
    """The finished result of the point with this identity, or None."""
    path = Path(store) / point_id / RESULT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise DamagedPoint(f"{path} cannot be read ({type(error).__name__}: {error}); delete "
                           f"{path.parent} and run again to train that point anew") from error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def work_folder(store: str | Path, point_id: str) -> Path:
    """A fresh `.partial-<pid>` folder for this process's run of the point, after removing
    the unfinished folders of killed runs of it (their pid is gone), saying so."""
    for stale in Path(store).glob(f"{point_id}.partial-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
            log.info("point %s: removed the unfinished work of a killed run (pid %s); it "
                     "trains again from the start", point_id, pid)
    work = Path(store) / f"{point_id}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def publish(work: Path, store: str | Path, point_id: str, result: dict[str, Any],
            label: str) -> dict[str, Any]:
    """Write `result` into the point's `.partial` folder and rename it into the store, so a
    killed run never leaves a half point that looks finished; the stored result wins when
    another process finished the same point first (it is as good as ours)."""
    (work / RESULT_FILE).write_text(json.dumps(result, indent=2))
    try:
        os.replace(work, Path(store) / point_id)
    except OSError:
        log.warning("point %s finished twice; keeping the first", label)
        shutil.rmtree(work, ignore_errors=True)
        return stored_result(store, point_id) or result
    return result


# What a point's result holds besides its scores: made from the finished chain.
Describe = Callable[[ChainResult], dict[str, Any]]


def prefix_cache(store: str | Path, shared: frozenset[str]) -> PrefixCache | None:
    """The store's cache of the prefixes in `shared` (None when there are none)."""
    return PrefixCache(Path(store) / PREFIXES, shared) if shared else None


def run_stored(chain: Chain, runtime: RuntimeParams, store: str | Path, label: str,
               keep: str = "none", describe: Describe | None = None,
               shared: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The point's result, from the store when its identity is there, else trained now
    (from the longest of its `shared` prefixes stored under `store/prefixes/`, if any).

    The result holds `identity`, `scores`, `timing` (seconds per step trained and evaluation,
    and in all), `prefix_steps_reused`, `finished`, whatever `describe` adds, and `reused`.
    """
    point_id = chain_identity(chain, runtime)
    stored = stored_result(store, point_id)
    if stored is not None:
        return stored | {"reused": True}
    log.info("%s: training (identity %s)", label, point_id)
    work = work_folder(store, point_id)
    started = time.perf_counter()
    outcome = run_chain(chain, runtime, work, keep=keep,
                        prefixes=prefix_cache(store, shared))
    result = {"identity": point_id, **(describe(outcome) if describe else {}),
              "scores": outcome.scores,
              "timing": outcome.seconds | {"total_seconds": time.perf_counter() - started},
              "prefix_steps_reused": outcome.reused_steps,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return publish(work, store, point_id, result, label) | {"reused": False}
