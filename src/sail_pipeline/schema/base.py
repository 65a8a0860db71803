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


# json_schema_extra keys of a field that starts from another section's settings.
INHERITS = "inherits"
INHERIT_DEFAULTS = "inherit_defaults"
# A stage's budget is one setting written as one of these keys: an override that gives one
# replaces the inherited one instead of adding a second.
BUDGET_KEYS = ("steps", "tokens", "epochs")


def inherited(path: str, defaults: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A Field whose value starts from the settings at `path` of the project's tree (e.g.
    `pretrain.alignment`), then this field's `defaults`, then what the user writes here: each
    setting is declared once, and `--env gpu` retunes every section that inherits it."""
    return Field(json_schema_extra={INHERITS: path, INHERIT_DEFAULTS: defaults or {}}, **kwargs)


def _lookup(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = tree
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, BaseModel):
            node = node.model_dump()
    return node if isinstance(node, dict) else None


def _over(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    if any(override.get(key) is not None for key in BUDGET_KEYS):
        base = {k: v for k, v in base.items() if k not in BUDGET_KEYS}
    return base | override


def resolve_inherited(tree: dict[str, Any], section: str, model: type[BaseModel]
                      ) -> dict[str, Any]:
    """`tree[section]` with each field of `model` that inherits resolved from `tree`: the
    source's keys that the field's model has, under its defaults, under what is written."""
    raw = tree.get(section)
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if INHERITS not in extra:
            continue
        target = field.annotation
        written = out.get(name)
        if written is not None and not isinstance(written, dict):
            continue  # a wrong type: validation names it
        source = _lookup(tree, str(extra[INHERITS])) or {}
        keys = target.model_fields if isinstance(target, type) and \
            issubclass(target, BaseModel) else {}
        value = _over({k: v for k, v in source.items() if k in keys},
                      dict(extra[INHERIT_DEFAULTS]))
        out[name] = _over(value, written or {})
    return out


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
