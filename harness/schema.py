"""The one way a user-written file is validated: a pydantic model with ``extra="forbid"``.

``variants.yml``, the gate file and RoboTwin seed lists are each a :class:`Config` model;
:func:`parse` turns pydantic's report into one line that names the file, the field and the
fix (an unknown key gets the closest known one).
"""

from __future__ import annotations

import difflib
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UsageError

M = TypeVar("M", bound=BaseModel)


class Config(BaseModel):
    """Base of every file schema: unknown keys are errors, values are not coerced across
    kinds (a string is not a number, a bool is not an int), instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "tagged-union"))]
    return ".".join(parts) or "(top level)"


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid where ``loc``'s last element sits (nested models followed)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current = fields[part].annotation
    return list(getattr(current, "model_fields", {}) or [])


def describe_error(model: type[BaseModel], exc: ValidationError) -> str:
    """pydantic's first error as '<field>: <what is wrong>' (one line)."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error.get("loc", ()))
    where = _location(loc)
    if error.get("type") == "extra_forbidden":
        known = _known_fields(model, loc)
        near = difflib.get_close_matches(str(loc[-1]), known, n=1) if loc else []
        hint = f" (did you mean {near[0]}?)" if near else (f"; known: {', '.join(known)}" if known else "")
        return f"unknown setting {where!r}{hint}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message} (got {error.get('input')!r})"


def parse(model: type[M], data: Any, where: str, fix: str = "") -> M:
    """``data`` (parsed JSON or YAML) validated as ``model``; any problem is one UsageError
    line naming ``where``. Validation runs in pydantic's JSON mode, where strict still takes a
    list for a tuple and an int for a float but never a string for a number."""
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:  # e.g. a YAML date or a non-string key
        raise UsageError(f"{where}: holds a value JSON cannot represent ({exc})"
                         + (f": {fix}" if fix else "")) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise UsageError(f"{where}: {describe_error(model, exc)}" + (f": {fix}" if fix else "")) from None
