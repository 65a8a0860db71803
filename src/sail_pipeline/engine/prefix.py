"""The prefix cache: a stage's checkpoint that several chains start with, trained once.

Two points of a sweep can share the first stages of their chains: `frozen_llm` and
`recaption_filtered` train the same Alignment on the same pairs and differ from Advance on.
A *prefix* is a chain's first k+1 steps with the evaluations that follow them; its identity
is made as a whole chain's is (`engine.chain.prefix_identities`), so two chains share a
prefix exactly when everything that decides its result is the same.

The experiment names the prefixes that more than one of its chains has (`shared_prefixes`),
and only those are kept, under `store/prefixes/<identity>/`: the checkpoint (`hf/`), and
`prefix.json` with each step's summary and the scores of the evaluations in it. The first
chain to reach a shared prefix trains it and publishes it by one rename (as the point store
does); a chain that finds it continues from its checkpoint. While a chain trains a shared
prefix it holds a lock on it (`<identity>.lock`, released by the kernel if it is killed), so
two points on two Ray workers do not both train it. No Kedro here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX_FILE = "prefix.json"
CHECKPOINT = "hf"


def shared_prefixes(identities: Iterable[list[str]]) -> frozenset[str]:
    """The prefix identities (each chain's, from `prefix_identities`, the whole chain left
    out) that more than one chain has: the ones worth keeping."""
    counts = Counter(pid for ids in identities for pid in set(ids[:-1]))
    return frozenset(pid for pid, count in counts.items() if count > 1)


@dataclass(frozen=True)
class PrefixCache:
    """Where shared prefixes are kept (`root`), and which ones are (`shared`)."""

    root: Path
    shared: frozenset[str]

    def load(self, prefix_id: str) -> dict[str, Any] | None:
        """The stored prefix: `summaries` (one per step), `scores`, and `hf_dir`; or None."""
        folder = self.root / prefix_id
        try:
            stored = json.loads((folder / PREFIX_FILE).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as error:  # damaged: train it again, and say so
            log.warning("prefix %s cannot be read (%s); it trains again", prefix_id, error)
            return None
        return stored | {"hf_dir": str(folder / CHECKPOINT)}

    def publish(self, prefix_id: str, hf_dir: str, summaries: list[dict[str, Any]],
                scores: dict[str, float]) -> None:
        """Copy the prefix's checkpoint in and rename it into place in one step. Called by
        the holder of `claim` only, so a folder already there is one `load` could not read
        (a chain trains a shared prefix only when it finds none): it is replaced."""
        work = self.root / f"{prefix_id}.partial-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(hf_dir, work / CHECKPOINT)
        (work / PREFIX_FILE).write_text(json.dumps({"summaries": summaries, "scores": scores},
                                                   indent=2, default=str))
        target = self.root / prefix_id
        if target.exists():
            shutil.rmtree(target)
            log.warning("prefix %s: the damaged copy was replaced", prefix_id[:12])
        os.replace(work, target)
        log.info("prefix %s kept for the other chains that start with it", prefix_id[:12])

    @contextlib.contextmanager
    def claim(self, prefix_id: str) -> Iterator[None]:
        """Hold the prefix's lock: whoever else needs it waits until it is published. Only
        the holder publishes, so a `.partial` folder found by the next holder is a killed
        one's, and is removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{prefix_id}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for stale in self.root.glob(f"{prefix_id}.partial-*"):
                    shutil.rmtree(stale, ignore_errors=True)
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
