"""Study-file problems as one line naming the file and key (search.errors.StudyFileError):
the strict TOML table every schema model builds on, and pydantic's errors put in those
words."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

#: TOML's own types, no coercion from strings; a float may be given as an integer.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)


def fail(message: str, *loc: str) -> PydanticCustomError:
    """A problem at `loc` below the table being validated (raise it in a validator)."""
    return PydanticCustomError("study_file", "{message}", {"message": message, "loc": loc})


def check_keys(table: Mapping[str, Any], allowed: Sequence[str],
               refused: Mapping[str, str] | None = None, hint: str = "") -> None:
    """Unknown keys fail naming the closest known one, else `hint`, else the known keys;
    `refused` keys fail with their reason."""
    for key in table:
        if refused and key in refused:
            raise fail(refused[key], key)
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, list(allowed), n=1)
        extra = (f" (did you mean '{close[0]}'?)" if close else
                 hint if hint or not allowed else f" (known keys: {', '.join(allowed)})")
        raise PydanticCustomError("unknown_key", "unknown key", {"key": key, "extra": extra})


class Table(BaseModel):
    """A TOML table: strict types, and an unknown key refused by name (extra="forbid")."""

    model_config = ConfigDict(extra="forbid", **STRICT)
    #: Keys a file may not give, with the reason.
    refused: ClassVar[dict[str, str]] = {}
    #: What an unknown-key message adds when no known key is close.
    unknown_hint: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # Before pydantic's own extra_forbidden, which cannot suggest the key meant.
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            check_keys(data, list(cls.model_fields), cls.refused, cls.unknown_hint)
        return data


_EXPECTED = {"int_type": "an integer", "float_type": "a finite number", "bool_type": "a boolean",
             "finite_number": "a finite number", "string_type": "a string",
             "list_type": "an array", "tuple_type": "an array", "dict_type": "a table",
             "model_type": "a table", "model_attributes_type": "a table"}


def one_line(value: object) -> str:
    return " ".join(str(value).splitlines()).strip()


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def message(error: ErrorDetails) -> str:
    """What went wrong, in the words of the study-file messages."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {type_name(value)} ({value!r})"
    if kind == "literal_error":  # ctx: "'a', 'b' or 'c'"
        return f"{value!r} is not one of {ctx['expected'].replace(' or ', ', ')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value!r}"
    if kind == "union_tag_invalid":
        tags = ctx["expected_tags"].replace("'", "")
        return f"unknown type {ctx['tag']!r} (choose from {tags})"
    if kind == "union_tag_not_found":
        return "missing required key 'type'"
    return str(ctx.get("message") or ctx.get("error") or error["msg"])


def _where(document: Mapping[str, Any], loc: Sequence[Any]) -> tuple[str | None, str | None]:
    """('[space.lr]', 'low') for ('space', 'lr', 'float', 'low'): the TOML table (None: the
    file) and the key below it. Union tags ('float') and list indexes are left out."""
    tables: list[str] = []
    keys: list[str] = []
    node: Any = document
    for part in loc:
        if isinstance(part, int):
            continue
        if not keys and isinstance(node, dict) and part not in node and part == node.get("type"):
            continue
        child = node.get(part) if isinstance(node, dict) and not keys else None
        if not tables or isinstance(child, dict):  # top-level keys are tables
            tables.append(part)
            node = child
        else:
            keys.append(part)
    return (f"[{'.'.join(tables)}]" if tables else None), (" ".join(keys) or None)


def describe(document: Mapping[str, Any], error: ErrorDetails) -> str:
    """One pydantic error on `document` as `[table] key: message`."""
    ctx = error.get("ctx") or {}
    extra_loc = ("type",) if error["type"] == "union_tag_invalid" else ctx.get("loc", ())
    table, key = _where(document, (*error["loc"], *extra_loc))
    if error["type"] == "unknown_key":
        return f"unknown key '{ctx['key']}' in {table or 'the file'}{ctx['extra']}"
    if error["type"] == "missing":
        return f"{table}: missing required key '{key}'" if key else f"{table}: missing table"
    return f"{table} {key}: {message(error)}" if key else f"{table}: {message(error)}"
