"""API keys from Kedro's credentials, held in this process only.

Keys must never travel as parameters: kedro-mlflow logs every parameter. A hook hands the
credentials over here when the Kedro context is created; nodes look them up by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CREDENTIALS: dict[str, Mapping[str, Any]] = {}


def remember(credentials: Mapping[str, Any]) -> None:
    _CREDENTIALS.clear()
    _CREDENTIALS.update({k: v for k, v in credentials.items() if isinstance(v, Mapping)})


def lookup(name: str) -> Mapping[str, Any] | None:
    """The entry `name` of conf/local/credentials.yml, e.g. `{"api_key": "..."}`."""
    return _CREDENTIALS.get(name)
