"""How every `chronik ... --help` lists its options: `CliApp`, the `typer.Typer` all the CLI's apps use.

Why: typer (0.2x) prints a type beside every option, and for a flag that is only noise
(`--json  <bool>`, `--help  <bool>`: a flag takes no value). An empty metavar tells typer to
print nothing there; the value types of other options (`<int range> [x>=0]`, `<str>`) stay, as
they say what to type. One group and one command class carry it, so a command added later gets
it without remembering to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandFunctionType


def _without_flag_types(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class CliCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class CliGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class CliApp(typer.Typer):
    """A `typer.Typer` whose groups and commands list flags without a type."""

    def __init__(self, **options: Any) -> None:
        super().__init__(cls=CliGroup, **options)

    def command(
        self, name: str | None = None, **options: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        """`typer.Typer.command`, whose default class lists flags without a type."""
        options.setdefault("cls", CliCommand)
        return super().command(name, **options)
