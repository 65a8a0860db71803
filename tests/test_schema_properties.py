"""Property-based tests of the parameter schema (hypothesis): any leaf of the default tree set
to a value of the wrong kind, or an unknown key added anywhere, fails validation with a message
that names the key (the dotted path a user would fix); the default tree itself validates."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sail_pipeline.schema import InvalidParameters, validate_parameters
from sail_pipeline.schema.project import deep_merge
from tests.test_pipelines import ROOT

# Dictionaries whose keys are the user's names, not the schema's: a new key there is a new
# entry (a variant, a candidate set, a mixture source), checked by its own rule.
OPEN_DICTS = ("variants", "sft.candidates", ".sources", "credentials")


def _base_tree() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted((ROOT / "conf/base").glob("parameters*.yml")):
        tree = deep_merge(tree, yaml.safe_load(path.read_text()) or {})
    return tree


BASE = _base_tree()


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict) and tree:
        return [leaf for key, value in tree.items()
                for leaf in _leaves(value, f"{prefix}.{key}" if prefix else str(key))]
    return [(prefix, tree)]


def _dicts(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return []
    own = [prefix] if not any(prefix.endswith(o) or prefix.startswith(o) for o in OPEN_DICTS
                              if o) else []
    return own + [d for key, value in tree.items()
                  for d in _dicts(value, f"{prefix}.{key}" if prefix else str(key))]


LEAVES = [(path, value) for path, value in _leaves(BASE) if value is not None]
DICTS = _dicts(BASE)


def _set(tree: dict, path: str, value: Any) -> dict:
    keys = path.split(".")
    patch: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        patch = {key: patch}
    return deep_merge(tree, patch)


def _wrong_kinds(value: Any) -> st.SearchStrategy:
    """Values no field of `value`'s kind accepts."""
    nested = st.just({"not": ["a", "setting"]})
    if isinstance(value, bool):
        return st.sampled_from(["maybe", [["yes"]], {"on": 1}])
    if isinstance(value, int | float):
        return st.one_of(st.sampled_from(["not-a-number", [[1]]]), nested,
                         st.text(alphabet="xyz!?", min_size=1, max_size=5))
    if isinstance(value, str):
        return st.one_of(st.just([[1, 2]]), nested)
    if isinstance(value, list):
        return st.one_of(st.just("not-a-list"), st.just(3.5), nested)
    return nested


def _names(message: str, path: str) -> bool:
    keys = [line.strip().split(":")[0] for line in message.splitlines()[1:]]
    return any(path == key or path.startswith(key + ".") or key.startswith(path + ".")
               or key.startswith(path + "[") for key in keys)


def test_the_default_tree_validates():
    assert validate_parameters(BASE).runtime is not None
    assert len(LEAVES) > 100 and len(DICTS) > 20


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_leaf_of_the_wrong_kind_fails_naming_its_key(data):
    path, value = data.draw(st.sampled_from(LEAVES), label="leaf")
    wrong = data.draw(_wrong_kinds(value), label="wrong value")
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(_set(BASE, path, wrong))
    assert _names(str(error.value), path), (path, wrong, str(error.value)[:600])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), key=st.from_regex(r"\A[a-z][a-z_]{2,12}\Z"))
def test_an_unknown_key_anywhere_fails_naming_it(data, key):
    where = data.draw(st.sampled_from(DICTS), label="dict")
    path = f"{where}.{key}" if where else key
    existing = BASE
    for part in path.split("."):
        existing = existing.get(part) if isinstance(existing, dict) else None
    if existing is not None:  # drew a real key: not unknown
        return
    with pytest.raises(InvalidParameters) as error:
        validate_parameters(_set(BASE, path, 1))
    assert _names(str(error.value), path), (path, str(error.value)[:600])
