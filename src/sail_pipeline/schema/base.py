"""What every parameter model shares.

Words, used the same way everywhere:
- *params*: what a user writes (a section of `conf/*/parameters*.yml`), validated by a model
  whose name ends in `Params`. Each setting is declared in exactly one such model.
- *config*: what a subprocess receives (the trainer's `RunConfig`); it contains params models,
  it does not redeclare their fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# json_schema_extra key of a field that changes how a run goes (its logging, its speed), not
# what it computes; a resumed run may change it (see `result_settings`).
RESULT_NEUTRAL = "result_neutral"


class StrictModel(BaseModel):
    """A wrong key fails validation, naming it, instead of being ignored."""

    model_config = ConfigDict(extra="forbid")


def neutral(default: Any = ..., **kwargs: Any) -> Any:
    """A Field that does not change results (log interval, threads, where a process runs)."""
    if "default_factory" in kwargs:
        return Field(json_schema_extra={RESULT_NEUTRAL: True}, **kwargs)
    return Field(default, json_schema_extra={RESULT_NEUTRAL: True}, **kwargs)


def result_settings(model: BaseModel) -> dict[str, Any]:
    """The model's values that decide its result, recursively (what a resume must match)."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get(RESULT_NEUTRAL):
            continue
        out[name] = _plain(getattr(model, name))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return result_settings(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
