"""Token samples -> micro batches, packed or padded, with a data position that survives resume.

Packing puts whole samples into rows of at most `max_seq_len` tokens. Position ids restart at
0 for every sample, which is all transformers needs to keep samples apart: with SDPA (CPU) it
builds a block-diagonal causal mask from them, with flash-attention (GPU) it turns them into
the cumulative lengths of the varlen kernel. A sample is never split, so an image's tokens
always sit in one row next to their text.

Targets are shifted inside each sample, so the last token of one sample is never trained to
predict the first token of the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

IGNORE_INDEX = -100
LossNorm = Literal["token", "sample", "square"]


@dataclass(frozen=True)
class TokenSample:
    """One encoded sample: unshifted labels (IGNORE_INDEX where unsupervised), its image."""

    input_ids: list[int]
    labels: list[int]
    image: bytes | None = None
    n_tiles: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


def best_fit(lengths: Sequence[int], order: Sequence[int], capacity: int,
             open_rows: int = 64) -> list[list[int]]:
    """Pack samples (in `order`) into rows of `capacity` tokens, tightest open row first.

    Only `open_rows` rows stay open at a time, so the cost is linear in the number of samples
    and the rows keep the shuffled order's mixing instead of grouping by length.
    """
    rows: list[list[int]] = []
    members: list[list[int]] = []
    free = np.empty(0, dtype=np.int64)
    for index in order:
        length = int(lengths[index])
        if length > capacity:
            raise ValueError(f"sample {index} has {length} tokens, more than the row's {capacity}")
        fits = np.flatnonzero(free >= length)
        if fits.size:
            slot = int(fits[np.argmin(free[fits])])
            members[slot].append(int(index))
            free[slot] -= length
            continue
        if len(members) == open_rows:
            fullest = int(np.argmin(free))
            rows.append(members.pop(fullest))
            free = np.delete(free, fullest)
        members.append([int(index)])
        free = np.append(free, capacity - length)
    # Fullest first: a ragged last micro batch then holds the emptiest rows.
    for slot in np.argsort(free, kind="stable"):
        rows.append(members[int(slot)])
    return rows


def _weights(n_supervised: int, norm: LossNorm) -> float:
    if norm == "token":
        return 1.0
    if norm == "sample":
        return 1.0 / n_supervised
    return 1.0 / math.sqrt(n_supervised)


def shifted_targets(labels: Sequence[int]) -> list[int]:
    """Position j is trained to predict token j+1 of the same sample; the last predicts nothing."""
    return list(labels[1:]) + [IGNORE_INDEX]


def collate(rows: list[list[TokenSample]], pad_id: int, norm: LossNorm,
            packed: bool) -> dict[str, torch.Tensor]:
    """Rows of samples -> input ids, targets, per-token loss weights (0 where unsupervised).

    Packed rows carry position ids that restart per sample and no attention mask; padded rows
    (one sample each) carry an attention mask instead, as a Hugging Face collator would.
    """
    width = max(sum(len(s) for s in row) for row in rows)
    shape = (len(rows), width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    targets = np.full(shape, IGNORE_INDEX, dtype=np.int64)
    weights = np.zeros(shape, dtype=np.float32)
    positions = np.zeros(shape, dtype=np.int64)
    attention = np.zeros(shape, dtype=np.int64)
    ramp = np.arange(width)
    for r, row in enumerate(rows):
        cursor = 0
        for sample in row:
            end = cursor + len(sample)
            input_ids[r, cursor:end] = sample.input_ids
            # shifted_targets: position j predicts token j+1 of the same sample.
            targets[r, cursor:end - 1] = sample.labels[1:]
            supervised = targets[r, cursor:end] != IGNORE_INDEX
            n_supervised = int(supervised.sum())
            if n_supervised:
                weights[r, cursor:end] = supervised * _weights(n_supervised, norm)
            positions[r, cursor:end] = ramp[:end - cursor]
            attention[r, cursor:end] = 1
            cursor = end
        # Trailing padding gets its own position run, so it forms a separate (ignored) segment.
        positions[r, cursor:] = ramp[:width - cursor]
    batch = {"input_ids": torch.from_numpy(input_ids), "targets": torch.from_numpy(targets),
             "loss_weights": torch.from_numpy(weights)}
    if packed:
        batch["position_ids"] = torch.from_numpy(positions)
    else:
        batch["attention_mask"] = torch.from_numpy(attention)
    return batch


@dataclass(frozen=True)
class BatchStats:
    samples: int
    real_tokens: int
    slot_tokens: int
    supervised_tokens: int

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real_tokens / max(self.slot_tokens, 1)


class TokenBatches:
    """Micro batch k is a pure function of (seed, k): resuming at step k needs nothing else.

    `packed`: each micro batch holds `rows` packed rows per rank; an epoch is a fresh shuffle
    packed anew, and its row count is known before training (`rows_per_epoch`), so the
    dataset has a length and a token budget converts to steps exactly.
    Not packed: each micro batch holds `rows` samples per rank, padded to the longest.
    """

    def __init__(self, samples: Sequence[TokenSample], rows: int, world_size: int, seed: int,
                 packed: bool, max_seq_len: int, norm: LossNorm = "token") -> None:
        if not samples:
            raise ValueError("no training samples left after encoding")
        self.samples = samples
        self.rows, self.world, self.seed = rows, world_size, seed
        self.packed, self.max_seq_len, self.norm = packed, max_seq_len, norm
        self.lengths = np.array([len(s) for s in samples])
        self._epoch_starts = [0]

    @lru_cache(maxsize=4)  # noqa: B019 - a handful of epochs, one instance per run
    def epoch_rows(self, epoch: int) -> tuple[tuple[int, ...], ...]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.samples))
        if not self.packed:
            return tuple((int(i),) for i in order)
        rows = best_fit(self.lengths, order, self.max_seq_len)
        # A micro batch is padded to its longest row: steps take rows of similar length
        # (sorted, cut into steps, steps shuffled), or a 215-token row pays for a 256 one.
        rows.sort(key=lambda row: int(self.lengths[row].sum()))
        per_step = self.rows * self.world
        # Micro batches are cut from the stream of all epochs' rows. An epoch whose row count
        # is not a multiple of the step shares a step with the next, so the steps must stay
        # aligned: this epoch's first `head` rows complete the previous epoch's last, partial
        # step, and its own partial step goes last. Both hold the longest rows, so the shared
        # step is as even as the others. (A partial step shuffled into the middle shifted
        # every later step off the sorted chunks: instruction's batches were 0.944 real
        # tokens instead of 0.997.)
        head_size = -self._epoch_start(epoch) % per_step if epoch else 0
        head_size = min(head_size, len(rows))
        head, rows = rows[len(rows) - head_size:], rows[:len(rows) - head_size]
        tail_size = len(rows) % per_step
        tail, rows = rows[len(rows) - tail_size:], rows[:len(rows) - tail_size]
        steps = [rows[i:i + per_step] for i in range(0, len(rows), per_step)]
        ordered = head + [row for k in rng.permutation(len(steps)) for row in steps[k]] + tail
        return tuple(tuple(row) for row in ordered)

    @property
    def rows_per_epoch(self) -> int:
        return len(self.epoch_rows(0))

    def _epoch_start(self, epoch: int) -> int:
        while len(self._epoch_starts) <= epoch:
            last = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[last] + len(self.epoch_rows(last)))
        return self._epoch_starts[epoch]

    def _row(self, position: int) -> tuple[int, ...]:
        epoch = 0
        while self._epoch_start(epoch + 1) <= position:
            epoch += 1
        return self.epoch_rows(epoch)[position - self._epoch_start(epoch)]

    def row_indices(self, micro_batch: int, rank: int = 0) -> list[tuple[int, ...]]:
        """The rows (tuples of sample indices) rank `rank` trains on in micro batch k."""
        per_step = self.rows * self.world
        start = micro_batch * per_step + rank * self.rows
        return [self._row(p) for p in range(start, start + self.rows)]

    def batch(self, micro_batch: int, rank: int, pad_id: int,
              pixels: Callable[[TokenSample], torch.Tensor] | None = None,
              ) -> tuple[dict[str, torch.Tensor], BatchStats]:
        rows = [[self.samples[i] for i in row] for row in self.row_indices(micro_batch, rank)]
        batch = collate(rows, pad_id, self.norm, self.packed)
        flat = [s for row in rows for s in row]
        if pixels is not None:
            images = [pixels(s) for s in flat if s.image is not None]
            if images:
                batch["pixel_values"] = torch.cat(images)
        stats = BatchStats(samples=len(flat), real_tokens=sum(len(s) for s in flat),
                           slot_tokens=batch["input_ids"].numel(),
                           supervised_tokens=int((batch["loss_weights"] > 0).sum()))
        return batch, stats

    def mean_tokens_per_row(self) -> float:
        rows = self.epoch_rows(0)
        return float(sum(self.lengths[list(r)].sum() for r in rows) / len(rows))

    def epoch_tokens(self) -> int:
        """Real (image + text) tokens in one pass over the samples."""
        return int(self.lengths.sum())

    def steps_for_epochs(self, epochs: float, grad_accum: int) -> int:
        """Optimizer steps that take every sample `epochs` times (whole steps, at least one)."""
        per_step = self.rows * self.world * grad_accum
        return max(1, math.ceil(epochs * self.rows_per_epoch / per_step))

    def steps_for_tokens(self, budget: int, grad_accum: int) -> int:
        """Optimizer steps that consume `budget` real (image + text) tokens across all ranks."""
        per_step = self.mean_tokens_per_row() * self.rows * self.world * grad_accum
        return max(1, math.ceil(budget / per_step))


def padding_efficiency(samples: Sequence[TokenSample], rows: int, seed: int, packed: bool,
                       max_seq_len: int, epochs: int = 1) -> float:
    """Fraction of real tokens in the slots of the micro batches of `epochs` epochs (full
    batches; with several epochs, the batches that straddle two epochs count too)."""
    plan = TokenBatches(samples, rows, 1, seed, packed, max_seq_len)
    real = slots = 0
    for k in range(max(1, epochs * plan.rows_per_epoch // rows)):
        row_lengths = [int(plan.lengths[list(r)].sum()) for r in plan.row_indices(k)]
        real += sum(row_lengths)
        slots += max(row_lengths) * len(row_lengths)
    return real / slots


def length_grouped_efficiency(samples: Sequence[TokenSample], batch: int, seed: int,
                              mega: int = 50) -> float:
    """The same fraction for padded batches with Hugging Face's `group_by_length` sampler:
    shuffled mega-batches of `mega` batches, sorted by length inside."""
    lengths = np.array([len(s) for s in samples])
    order = np.random.default_rng(seed).permutation(len(samples))
    real = slots = 0
    for start in range(0, len(order), batch * mega):
        chunk = order[start:start + batch * mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        for b in range(0, len(chunk) - batch + 1, batch):
            picked = lengths[chunk[b:b + batch]]
            real += int(picked.sum())
            slots += int(picked.max()) * batch
    return real / slots
