"""Write docs/reference/parameters.md from the parameter schema, so the page cannot drift.

Every key a user may write in `conf/*/parameters*.yml`, from `sail_pipeline.schema`'s pydantic
models: its dotted key, its type, its default (or what it inherits), and its description
(the field's own, else the comment lines right above it and after it in the schema's source).

    python tools/param_reference.py            # write docs/reference/parameters.md
    python tools/param_reference.py --check    # exit 1 if it is not what would be written
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "parameters.md"
HEADER = """\
# Parameters

Every key of `conf/*/parameters*.yml`, generated from the pydantic schema
(`src/sail_pipeline/schema/`) by `python tools/param_reference.py`; `make test` fails when this
page is not what the generator writes. A key is written as its path in the tree: `sft.knowledge.lr`
is `lr` under `knowledge` under `sft`. `<name>` stands for a name you choose (a variant, a
candidate set), `[]` for an item of a list. "result-neutral" marks a setting that changes how a
run goes (logging, speed), not what it computes: a resumed or reused run may change it.
"""


def _models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models a field holds: (how its key continues, the model)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin in (typing.Union, types.UnionType):
        found = [m for arg in args for m in _models(arg)]
        if len(found) > 1:  # a discriminated union: each kind is its own table
            return [(f" ({_kind(model)})", model) for _, model in found]
        return found
    if origin in (list, tuple):
        return [(f"[]{suffix}", model) for arg in args for suffix, model in _models(arg)]
    if origin is dict and len(args) == 2:
        return [(f".<name>{suffix}", model) for suffix, model in _models(args[1])]
    return []


def _kind(model: type[BaseModel]) -> str:
    field = model.model_fields.get("kind")
    if field is not None and typing.get_origin(field.annotation) is typing.Literal:
        return f"kind: {typing.get_args(field.annotation)[0]}"
    return model.__name__


def _type_name(annotation: Any) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    text = re.sub(r"typing\.|sail_pipeline\.[\w.]+\.", "", text)
    text = re.sub(r"Annotated\[(.*), FieldInfo\(.*\)\]", r"\1", text)
    return text.replace("NoneType", "None").replace("|", "\\|")


def _default(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "inherits" in extra:
        written = extra.get("inherit_defaults") or {}
        return f"inherits `{extra['inherits']}`" + (
            f", then `{json.dumps(written)}`" if written else "")
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value, default=str)}`"


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Each field's comment lines in the model's source: those right above it, and its own
    line's trailing comment."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = re.match(r"\s{4}(\w+)\s*:", line)
        if match and not stripped.startswith(("def ", "@")):
            trailing = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            if trailing.startswith(("type:", "noqa")):  # for the linters, not for people
                trailing = ""
            found[match.group(1)] = " ".join([*above, trailing]).strip()
        above = []
    return found


def _description(model: type[BaseModel], name: str, comments: dict[str, str]) -> str:
    field = model.model_fields[name]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    text = field.description or comments.get(name, "")
    if extra.get("result_neutral"):
        text = f"{text} (result-neutral)".strip()
    return text.replace("|", "\\|").replace("\n", " ")


def _tables(key: str, model: type[BaseModel], seen: set[tuple[str, type]]) -> list[str]:
    if (key, model) in seen:
        return []
    seen.add((key, model))
    doc = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    out = [f"## `{key}`", "", *([doc, ""] if doc and not doc.startswith("Usage docs") else []),
           "| key | type | default | description |", "|---|---|---|---|"]
    comments = _comments(model)
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        full = f"{key}.{name}"
        out.append(f"| `{full}` | {_type_name(field.annotation)} | {_default(field)} | "
                   f"{_description(model, name, comments)} |")
        nested += [(full + suffix, sub) for suffix, sub in _models(field.annotation)]
    out.append("")
    for sub_key, sub in nested:
        out += _tables(sub_key, sub, seen)
    return out


def render(root: type[BaseModel] | None = None) -> str:
    """The page for `root` (default: the project's `ProjectParams`)."""
    if root is None:
        from sail_pipeline.schema import ProjectParams as root
    lines = [HEADER]
    seen: set[tuple[str, type]] = set()
    for name, field in root.model_fields.items():
        if name == "variants":
            continue  # the whole tree again, under a name (see below)
        for suffix, model in _models(field.annotation):
            lines += _tables(name + suffix, model, seen)
    lines += ["## `variants`", "",
              "`variants.<name>` is the whole tree above again, with that variant's overrides "
              "merged in (`kedro run --pipelines=variants`).", ""]
    return "\n".join(lines).rstrip() + "\n"


def is_current(root: type[BaseModel] | None = None) -> bool:
    """Whether the committed page is what the generator writes for `root`."""
    return PAGE.exists() and PAGE.read_text() == render(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the page differs from what would be written")
    args = parser.parse_args(argv)
    if args.check:
        if not is_current():
            print(f"{PAGE.relative_to(ROOT)} is out of date with the schema: run "
                  "`python tools/param_reference.py`", file=sys.stderr)
            return 1
        print(f"{PAGE.relative_to(ROOT)} is up to date")
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(render())
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
