"""The one schema layer for documents that come from outside the daemon's root.

Requests on both sockets, a store's manifests and Convoy 0.5.2 configs,
records another host wrote on shared storage: each has a schema (a
`TypedDict`, so the parsed document is a plain dict) and is read only through
`parse_json`, which checks the size first and then parses and validates in
one pass (pydantic-core: JSON nesting is bounded, wrong types and missing
fields are named). Nothing downstream looks at an unchecked `dict[...]`.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from app.errors import ConvoyError, InvalidInput

T = TypeVar("T")
MAX_PROBLEMS = 3  # a message names the first few problems, never the whole document


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(schema: Any) -> TypeAdapter[Any]:  # Any: a type expression (a class, Annotated, a union)
    """One adapter per schema, built on first use (building one compiles the validator)."""
    adapter = _adapters.get(schema)
    if adapter is None:
        adapter = _adapters[schema] = TypeAdapter(schema)
    return adapter


def describe(error: ValidationError) -> str:
    """The first problems of a validation error as `field.path: what is wrong` (no input values)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False)[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in item["loc"]) or "the document"
        problems.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def parse_json(
    schema: type[T] | Any,
    data: bytes | str,
    *,
    what: str,
    max_bytes: int,
    error: type[ConvoyError] = InvalidInput,
) -> T:
    """Parse and validate `data` against `schema`; raise `error` naming `what` and the problem.

    `max_bytes` is checked before any parsing: callers pass the largest
    document their format allows, so memory is bounded by design.
    """
    size = len(data)
    if size > max_bytes:
        raise error(f"{what} is {size} bytes, more than the {max_bytes} this format allows")
    try:
        return cast(T, _adapter(schema).validate_json(data))  # validated against `schema`, whose type T is
    except ValidationError as err:
        raise error(f"{what} is not valid: {describe(err)}") from None


def validate(schema: type[T] | Any, value: object, *, what: str, error: type[ConvoyError] = InvalidInput) -> T:
    """Validate an already-parsed value (for example a query string turned into a dict)."""
    try:
        return cast(T, _adapter(schema).validate_python(value))
    except ValidationError as err:
        raise error(f"{what} is not valid: {describe(err)}") from None
