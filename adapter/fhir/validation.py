"""Is a written resource valid FHIR R4? Every problem at once, each naming its element.

The R4 models of ``fhir.resources`` check structure, cardinality and the form of each
primitive, but they take JSON that FHIR's JSON format does not: ``"active": "yes"`` for a
boolean, ``"3"`` for an integer, and any code where the specification binds a *required*
value set (``"gender": "f"``). Those rules are checked here as well, from the models' own
field declarations (a field's type, and the codes of its required binding), so that a
client learns of every problem in one OperationOutcome, each message saying that it is
FHIR's rule that was broken (what a vendor cannot hold is said elsewhere, by the source).

Messages name the element and the rule, never the value: it may be patient data.
"""

from __future__ import annotations

import re
import types
import typing
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from adapter.fhir.outcome import Issue

__all__ = ["MAX_STRING", "fhir_problems"]

_MAX_PROBLEMS = 100  # a body with more is not worth listing further
# The longest string element a write may carry. FHIR allows up to 1 MB; no vendor here
# keeps a name, an address or a comment of more than a few hundred characters, and a
# longer one is refused before any vendor sees it.
MAX_STRING = 4096
# Control characters a FHIR string should not hold (all below U+0020 but tab, CR, LF).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A dateTime or instant with a time and a zone: its moment must be one in years 1-9999
# once in UTC (9999-12-31T23:59:59-14:00 is not).
_ZONED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


_NOT_A_STRING = "a url is a JSON string"


def fhir_problems(resource_type: str, resource: dict[str, Any]) -> list[Issue]:
    """Every way ``resource`` is not a valid R4 ``resource_type`` (empty: it is)."""
    issues: list[Issue] = []
    seen: set[str] = set()
    model = get_fhir_model_class(resource_type)
    problems = _json_problems(model, resource, resource_type)
    for path, rule in problems:
        seen.add(path)
        issues.append(_issue(path, rule))
    if issues and any(rule == _NOT_A_STRING for _, rule in problems):
        return issues[:_MAX_PROBLEMS]  # the models' url check fails on it (not a string)
    try:
        model.model_validate(resource)
    except (TypeError, AttributeError):
        # A validator of the models failing on a value of a JSON type it did not expect,
        # where no rule above saw it: still the client's error, never a 500.
        issues.append(_issue(resource_type, "an element holds a value of the wrong JSON type"))
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            path = _path(resource_type, error.get("loc", ()))
            if path not in seen:  # one problem an element, the more precise first
                seen.add(path)
                message = str(error.get("msg", "invalid")).split("\n")[0][:200]
                issues.append(_issue(path, _plain(message)))
    return issues[:_MAX_PROBLEMS]


def _issue(path: str, rule: str) -> Issue:
    said = rule if rule.startswith("this service") else f"not valid FHIR R4: {rule}"
    return Issue("error", "invalid", said, (path,))


def _plain(message: str) -> str:
    """The model's message without pydantic's own prefixes."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return _CLEARER.get(message, message)


# The models' messages that say more plainly what FHIR wants.
_CLEARER = {
    "Date value string does not match spec regex.": "a date is YYYY, YYYY-MM or YYYY-MM-DD",
    "DateTime value string does not match spec regex.": (
        "a dateTime is a date, or a date and time with its UTC offset"
    ),
    "Instant value string does not match spec regex.": (
        "an instant is a date and time with seconds and its UTC offset"
    ),
}


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "__root__":
            path += f".{part}"
    return path


# -- what the models declare, checked on the JSON as sent --------------------------------


@cache
def _fields(model: Any) -> dict[str, tuple[str, tuple[str, ...], type[Any] | None]]:
    """Each JSON name of ``model``: its primitive kind (``boolean``, ``integer``,
    ``decimal``, ``datetime``, ``url``, ``other``), the codes of its required binding, and
    the model of a complex element."""
    out: dict[str, tuple[str, tuple[str, ...], type[Any] | None]] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        codes = extra.get("enum_values") or ()
        out[key] = (_kind(field.annotation), tuple(str(c) for c in codes), _model(field.annotation))
    return out


def _leaves(annotation: Any) -> list[Any]:
    """The types an annotation allows, through Optional, Union, List and Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return [t for arg in typing.get_args(annotation) for t in _leaves(arg)]
    return [annotation]


def _kind(annotation: Any) -> str:
    leaves = [t for t in _leaves(annotation) if t is not type(None)]
    if leaves == [bool]:
        return "boolean"
    if leaves == [int]:
        return "integer"
    if any(getattr(t, "__name__", "") == "Decimal" for t in leaves) or leaves == [float]:
        return "decimal"
    if any(t is datetime for t in leaves):
        return "datetime"
    if any(getattr(t, "__name__", "") == "AnyUrl" for t in leaves):
        return "url"
    return "other"


def _model(annotation: Any) -> type[Any] | None:
    """The model class of a complex element (``abc.HumanNameType`` -> HumanName)."""
    for leaf in _leaves(annotation):
        name = getattr(leaf, "__name__", "")
        if name.endswith("Type") and name[:-4] not in ("", "Resource"):
            try:
                found: type[Any] = get_fhir_model_class(name[:-4])
            except (KeyError, ValueError, AttributeError):
                continue
            return found
    return None


def _json_problems(model: Any, data: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(data, dict):
        return []  # the model says what is wrong with a non-object
    out: list[tuple[str, str]] = []
    fields = _fields(model)
    for key, value in data.items():
        if key not in fields or key.startswith("_"):
            continue  # unknown keys and primitive extensions: the model's to judge
        kind, codes, inner = fields[key]
        for index, item in _items(value):
            where = f"{path}.{key}" if index is None else f"{path}.{key}[{index}]"
            rule = _primitive_rule(kind, codes, item)
            if rule is not None:
                out.append((where, rule))
            elif inner is not None:
                out.extend(_json_problems(inner, item, where))
            if len(out) >= _MAX_PROBLEMS:
                return out
    return out


def _items(value: Any) -> list[tuple[int | None, Any]]:
    if isinstance(value, list):
        return list(enumerate(value))
    return [(None, value)]


def _primitive_rule(kind: str, codes: tuple[str, ...], value: Any) -> str | None:
    if value is None:
        return None  # the model says whether null is allowed
    if kind == "boolean" and not isinstance(value, bool):
        return "a boolean is JSON true or false"
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return "an integer is a JSON number without a fraction"
    if kind == "decimal" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "a decimal is a JSON number"
    if kind == "url" and not isinstance(value, str):
        return _NOT_A_STRING
    if codes and isinstance(value, str) and value not in codes:
        return f"the code must be one of {' | '.join(codes)} (a required value set)"
    if isinstance(value, str):
        return _string_rule(kind, value)
    return None


def _string_rule(kind: str, value: str) -> str | None:
    if len(value) > MAX_STRING:
        return f"this service takes strings of at most {MAX_STRING} characters"
    if _CONTROL.search(value):
        return "a string holds no control characters (FHIR's string: tab, CR and LF only)"
    if kind == "datetime" and _ZONED.fullmatch(value):
        text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
        try:
            datetime.fromisoformat(text).astimezone(UTC)
        except (ValueError, OverflowError):
            return "the moment lies outside years 1-9999 once in UTC"
    return None
