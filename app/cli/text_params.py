"""Text parameters without pydantic: a `convoy` command that does not pay for typer's coercion layer.

Typer (0.2x) coerces every parameter value through a pydantic TypeAdapter
built on first use, so any command, even `convoy list` (its --socket),
imported pydantic and built adapters: about 70 ms of CPU, as much as the
rest of the command. Convoy's commands take text (`str`, `list[str]`) and
flags, and a text value from the command line or the environment is a str
already: its coercion is the identity (what typer's `_parse_cli_str` does
to a str). `install()` gives typer that coercion for exactly these two
types; every other type (flags, the daemon's float options) keeps typer's
own, built at its first value rather than for a parameter left out.

This reaches into typer's private `typer.core.build_runtime_param`; a typer
without it (older ones coerce through click's types, without pydantic) is
left alone. The CLI's behaviour is checked through the real command by
tests/core/test_cli*.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args, get_origin


def _text(value: Any) -> str:
    # argv and environment values are str in Python 3; anything else is what typer would make of it
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def install() -> None:
    """Before the command line is parsed."""
    try:
        from typer import _coercion, core
    except ImportError:  # pragma: no cover - a typer that coerces through click's types: nothing to do
        return
    if not hasattr(core, "build_runtime_param"):  # pragma: no cover - as above
        return
    typers_own = _coercion.build_runtime_param

    @dataclass(frozen=True)
    class Text(_coercion.RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return _text(value)

    @dataclass(frozen=True)
    class TextList(_coercion.RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return [_text(item) for item in (value if isinstance(value, list | tuple) else [value])]

    @dataclass(frozen=True)
    class TypersOwn(_coercion.RuntimeParam):
        """Typer's coercion, built at the first value: a flag left out (None, as --help is) needs none."""

        descriptor: _coercion.TypeDescriptor
        built: list[_coercion.RuntimeParam] = field(default_factory=list, compare=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if not self.built:
                self.built.append(typers_own(self.descriptor))
            return self.built[0]._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor: _coercion.TypeDescriptor) -> _coercion.RuntimeParam:
        annotation: Any = descriptor.annotation
        info = descriptor.parameter_info
        plain = descriptor.file_annotation is None and info.parser is None
        if plain and annotation is str:
            return Text(parameter_info=info, annotation=annotation)
        if plain and get_origin(annotation) is list and get_args(annotation) == (str,):
            return TextList(parameter_info=info, annotation=annotation)
        return TypersOwn(parameter_info=info, annotation=annotation, descriptor=descriptor)

    core.build_runtime_param = build  # private in typer: where its parameters look it up
