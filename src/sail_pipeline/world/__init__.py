"""Procedurally generated world of themed shape scenes with captions, VQA and chats."""

from sail_pipeline.schema.palette import BACKGROUNDS, COLOURS, TEXT_RGB
from sail_pipeline.schema.vocab import NUMBER_WORDS, POSITIONS, SHAPE_KINDS, number_word
from sail_pipeline.world.alt_text import alt_text
from sail_pipeline.world.captions import detailed_caption
from sail_pipeline.world.config import WorldParams, check_feasible
from sail_pipeline.world.conversation import IMAGE_PLACEHOLDER, conversation
from sail_pipeline.world.generate import (
    BENCHMARK,
    CONVERSATION_COLUMNS,
    PROBE_COLUMNS,
    SCENE_COLUMNS,
    TRAIN,
    VQA_COLUMNS,
    WorldTables,
    generate_world,
    rows_of_split,
    scene_id_for,
)
from sail_pipeline.world.probes import PROBE_TYPES
from sail_pipeline.world.questions import (
    ANSWER_INSTRUCTION,
    QUESTION_TYPES,
    answer_choices,
    chance_levels,
)
from sail_pipeline.world.render import decode_image, encode_png, render
from sail_pipeline.world.sampling import sample_scene
from sail_pipeline.world.scene import Scene, ShapeInstance, scene_signature
from sail_pipeline.world.seeding import scene_streams
from sail_pipeline.world.vqa import VQA, vqa_pairs

__all__ = [
    "rows_of_split",
    "ANSWER_INSTRUCTION",
    "BACKGROUNDS",
    "BENCHMARK",
    "COLOURS",
    "CONVERSATION_COLUMNS",
    "IMAGE_PLACEHOLDER",
    "NUMBER_WORDS",
    "POSITIONS",
    "PROBE_COLUMNS",
    "PROBE_TYPES",
    "QUESTION_TYPES",
    "SCENE_COLUMNS",
    "SHAPE_KINDS",
    "TEXT_RGB",
    "TRAIN",
    "VQA",
    "VQA_COLUMNS",
    "Scene",
    "ShapeInstance",
    "WorldParams",
    "WorldTables",
    "alt_text",
    "check_feasible",
    "answer_choices",
    "chance_levels",
    "conversation",
    "decode_image",
    "detailed_caption",
    "encode_png",
    "generate_world",
    "number_word",
    "render",
    "sample_scene",
    "scene_id_for",
    "scene_signature",
    "scene_streams",
    "vqa_pairs",
]
