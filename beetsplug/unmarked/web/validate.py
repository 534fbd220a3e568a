"""Request input: every bad value becomes a 400 that says what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from ..operations import OPERATIONS, Operation

_TYPES = {"op": str, "query": str, "force": bool}


class ApiError(Exception):
    """An HTTP error with a JSON body: {"error": message, **extra}."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def body_fields(allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The JSON object body (optional when nothing is required), type-checked."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; expected: {', '.join(sorted(allowed))}")
    missing = sorted(set(required) - set(body))
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    for name, value in body.items():
        expected = _TYPES[name]
        if type(value) is not expected:  # bool is an int subclass: be exact
            raise ApiError(400, f"field {name!r} must be a {expected.__name__}, not {type(value).__name__}")
    return body


def op_arg(name: Any) -> Operation:
    if not isinstance(name, str) or name not in OPERATIONS:
        raise ApiError(400, f"unknown operation {name!r}; expected one of: {', '.join(OPERATIONS)}")
    return OPERATIONS[name]


def whole_number(text: str) -> int | None:
    """ASCII digits only ('²'.isdigit() is true), and small enough for SQLite."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = whole_number(raw)
    if value is None:
        raise ApiError(400, f"{name} must be a whole number, not {raw!r}")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name} must be {bound}, not {value}")
    return value
