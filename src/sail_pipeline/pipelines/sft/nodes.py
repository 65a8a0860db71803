"""Curriculum SFT: Knowledge -> Instruction -> Preference, each starting where the last ended."""

from __future__ import annotations

from typing import Any

from sail_pipeline.pipelines import training_node


def train_sft_stage(stage: str, train: str, evaluation: str, previous: dict, sft: dict,
                    runtime: dict) -> dict[str, Any]:
    return training_node.train("vlm", stage, "sft", sft[stage], runtime, train, evaluation,
                               init_from=previous["hf_dir"])


def train_knowledge(train: str, evaluation: str, advance: dict, sft: dict,
                    runtime: dict) -> dict[str, Any]:
    return train_sft_stage("knowledge", train, evaluation, advance, sft, runtime)


def train_instruction(train: str, evaluation: str, knowledge: dict, sft: dict,
                      runtime: dict) -> dict[str, Any]:
    return train_sft_stage("instruction", train, evaluation, knowledge, sft, runtime)


def train_preference(train: str, evaluation: str, instruction: dict, sft: dict,
                     runtime: dict) -> dict[str, Any]:
    return train_sft_stage("preference", train, evaluation, instruction, sft, runtime)
