"""Throughput telemetry over a window of steps: what a user needs to see where time goes.

Tokens/s, samples/s, the fraction of wall time spent waiting for data, the padding fraction
of the batches, achieved TFLOP/s and MFU (from the model's FLOPs per token, when the device's
peak is known), and peak memory.

`PhaseClock` splits a process's life, from the moment the kernel created it, into named
phases (imports, model, data, engine, eval, train, save, ...): where a stage's fixed cost goes.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sail_pipeline.process_stats import process_started_at
from sail_pipeline.training.packing import BatchStats


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@dataclass
class ThroughputWindow:
    """Accumulates micro batches between two log lines; `metrics()` reports and resets."""

    world_size: int
    device: torch.device
    peak_tflops: float | None = None
    flops_of: Callable[[BatchStats, int, int], float] | None = None
    loss: float = 0.0
    micro_batches: int = 0
    samples: int = 0
    real_tokens: int = 0
    slot_tokens: int = 0
    supervised_tokens: int = 0
    flops: float = 0.0
    wait: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, stats: BatchStats | None, samples: int, wait: float,
            row_width: int = 0, tiles: int = 0) -> None:
        self.loss += loss
        self.micro_batches += 1
        self.samples += samples
        self.wait += wait
        if stats is not None:
            self.real_tokens += stats.real_tokens
            self.slot_tokens += stats.slot_tokens
            self.supervised_tokens += stats.supervised_tokens
            if self.flops_of is not None:
                self.flops += self.flops_of(stats, row_width, tiles)

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.micro_batches, 1)

    def metrics(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        world = self.world_size
        out = {
            "train_loss": self.mean_loss,
            "samples_per_s": self.samples * world / elapsed,
            "data_wait_fraction": self.wait / elapsed,
            "peak_memory_gib": peak_memory_gib(self.device),
        }
        if self.slot_tokens:
            out |= {
                "tokens_per_s": self.real_tokens * world / elapsed,
                "supervised_tokens_per_s": self.supervised_tokens * world / elapsed,
                "padding_fraction": 1.0 - self.real_tokens / self.slot_tokens,
            }
        if self.flops:
            achieved = self.flops / elapsed / 1e12  # per rank
            out["tflops_per_gpu"] = achieved
            if self.peak_tflops:
                out["mfu"] = achieved / self.peak_tflops
        self.reset()
        return out

    def reset(self) -> None:
        self.loss, self.micro_batches, self.samples = 0.0, 0, 0
        self.real_tokens = self.slot_tokens = self.supervised_tokens = 0
        self.flops, self.wait = 0.0, 0.0
        self.started = time.perf_counter()


@dataclass
class PhaseClock:
    """Wall seconds per named phase; `mark(p)` charges the time since the last mark to p."""

    started: float = field(default_factory=process_started_at)
    phases: dict[str, float] = field(default_factory=dict)
    first_step: float | None = None

    def __post_init__(self) -> None:
        self._last = self.started

    def mark(self, phase: str) -> None:
        now = time.time()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now

    def elapsed(self) -> float:
        return time.time() - self.started

    def first_step_done(self) -> None:
        """The fixed cost of a stage ends when its first optimizer step does."""
        if self.first_step is None:
            self.first_step = self.elapsed()

    def report(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.phases.items()}


def format_metrics(metrics: dict[str, float]) -> str:
    """`name value` pairs on one line, four significant digits: the trainer's log format."""
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
