"""Freeze by module-name keys: one function, and it says exactly what trains."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

log = logging.getLogger(__name__)

# Module keys of transformers' InternVL / LLaVA layout; a stage names the groups it trains.
MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "vision": ("model.vision_tower",),
    "projector": ("model.multi_modal_projector",),
    "llm": ("model.language_model", "lm_head"),
}


@dataclass(frozen=True)
class FreezeReport:
    trainable: tuple[str, ...]
    frozen_count: int
    trainable_params: int
    total_params: int

    def summary(self) -> str:
        share = self.trainable_params / max(self.total_params, 1)
        return (f"{self.trainable_params:,} of {self.total_params:,} parameters train "
                f"({share:.1%}) in {len(self.trainable)} tensors")


def module_group(parameter_name: str) -> str:
    """The group a parameter belongs to ('other' when none claims it, e.g. a classifier head)."""
    for group, prefixes in MODULE_GROUPS.items():
        if any(parameter_name == p or parameter_name.startswith(p + ".") for p in prefixes):
            return group
    return "other"


def expand_groups(groups: list[str]) -> dict[str, tuple[str, ...]]:
    """Group names ('projector') or raw module prefixes ('model.vision_tower.encoder')."""
    return {group: MODULE_GROUPS.get(group, (group,)) for group in groups}


def freeze(model: nn.Module, trainable: list[str]) -> FreezeReport:
    """Make exactly the parameters under the given groups / prefixes trainable."""
    groups = expand_groups(trainable)
    keys = [key for group_keys in groups.values() for key in group_keys]
    matched = {key: 0 for key in keys}
    names: list[str] = []
    trainable_params = total = frozen = 0
    for name, param in model.named_parameters():
        hits = [k for k in keys if name == k or name.startswith(k + ".")]
        param.requires_grad_(bool(hits))
        total += param.numel()
        for key in hits:
            matched[key] += 1
        if hits:
            names.append(name)
            trainable_params += param.numel()
        else:
            frozen += 1
    # A tied lm_head shares the embedding's tensor and is not listed on its own, so a group
    # fails only when none of its keys matched anything.
    unmatched = [g for g, group_keys in groups.items() if not any(matched[k] for k in group_keys)]
    if unmatched:
        raise ValueError(f"trainable keys match no parameter: {unmatched}")
    report = FreezeReport(tuple(names), frozen, trainable_params, total)
    log.info("freeze(%s): %s", trainable, report.summary())
    for name in names:
        log.debug("  trains %s", name)
    return report
