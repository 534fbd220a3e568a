"""Request input: every bad value becomes a 400 that says what is wrong."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import jsonify, request

from ..operations import OPERATIONS, Operation

MAX_BODY = 1 << 20  # bytes of a request body: 100 000 ids fit in 1 MiB
MAX_DEPTH = 32  # levels of nested arrays/objects in a request body (ours need 2)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")

_TYPES = {"op": str, "query": str, "force": bool, "ids": list, "all": bool, "scope": str,
          "offset": int, "limit": int}
MAX_ID = 2**63 - 1  # SQLite's INTEGER
# Which items of the query a listing, preview or marker write takes, for the operation.
SCOPES = ("unmarked", "marked", "all")


class ApiError(Exception):
    """An HTTP error with a JSON body: {"error": message, **extra}."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def nesting(raw: bytes) -> int:
    """How deep a JSON text's arrays and objects nest (brackets inside strings
    do not count), up to MAX_DEPTH + 1: Python's parser recurses once a level
    and a few thousand levels raise RecursionError, a 500."""
    depth = deepest = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


def check_body() -> None:
    """Any request body, before anyone parses it: within MAX_BODY bytes (the
    app's MAX_CONTENT_LENGTH, see ``too_large``) and MAX_DEPTH levels deep."""
    raw = request.get_data(cache=True)
    if raw and nesting(raw) > MAX_DEPTH:
        raise ApiError(400, f"request body nests more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} are accepted")


def too_large(error: Exception) -> Any:
    """Werkzeug refuses a body over MAX_CONTENT_LENGTH: say so as a JSON 400."""
    return jsonify({"error": f"request body is too large; at most {MAX_BODY} bytes "
                             f"({MAX_BODY >> 20} MiB) are accepted"}), 400


def body_fields(allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The JSON object body (optional when nothing is required), type-checked.
    Its size and depth were checked before the view ran (guard.py)."""
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
        if isinstance(value, str):
            text(name, value)
    return body


def text(name: str, value: str) -> str:
    """JSON may carry a lone surrogate ("\\ud800"), which no database or file takes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start:exc.end].encode("unicode_escape").decode("ascii")
        raise ApiError(400, f"field {name!r} is not valid Unicode text: lone surrogate {bad} "
                            f"at position {exc.start}") from exc
    return value


def id_list(value: list[Any]) -> list[int]:
    """Item ids: whole numbers SQLite can hold, each once, in the order given."""
    for index, item in enumerate(value):
        if type(item) is not int or not 0 < item <= MAX_ID:
            raise ApiError(400, f"ids[{index}] must be an item id (a whole number from 1 to {MAX_ID}), "
                                f"not {json.dumps(item)[:40]}")
    return list(dict.fromkeys(value))


def op_arg(name: Any) -> Operation:
    if not isinstance(name, str) or name not in OPERATIONS:
        raise ApiError(400, f"unknown operation {name!r}; expected one of: {', '.join(OPERATIONS)}")
    return OPERATIONS[name]


def scope_arg(name: Any, default: str) -> str:
    if name is None:
        return default
    if name not in SCOPES:
        raise ApiError(400, f"unknown scope {name!r}; expected one of: {', '.join(SCOPES)}")
    return name


def choice_arg(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise ApiError(400, f"{name} must be one of: {', '.join(choices)}; not {raw!r}")
    return raw


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
