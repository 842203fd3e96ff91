"""Subcommands built on first use: the start-up of every ``fmt`` command is paid by each run."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup


class LazyCommands(MutableMapping[str, "TyperCommand | TyperGroup"]):
    """A group's ``commands``, read from ``{name: "module:attribute"}`` when first asked for.

    Typer and click look a subcommand up by name (``get``), list the names (suggestions for a
    typo) and walk them all only for ``--help``, completion and docs: only those import every
    module. The attribute is a Typer app (a group) or a function (a single command);
    ``prepare`` is called on each command as it comes in, built here or set from outside.
    """

    def __init__(
        self,
        targets: dict[str, str],
        prepare: Callable[[TyperCommand | TyperGroup], None] = lambda built: None,
    ) -> None:
        self._targets = dict(targets)
        self._prepare = prepare
        self._built: dict[str, TyperCommand | TyperGroup] = {}

    def __getitem__(self, name: str) -> TyperCommand | TyperGroup:
        if name not in self._built:
            if name not in self._targets:
                raise KeyError(name)
            built = _command(name, self._targets[name])
            self._prepare(built)
            self._built[name] = built
        return self._built[name]

    def __setitem__(self, name: str, command: TyperCommand | TyperGroup) -> None:
        self._prepare(command)
        self._targets.setdefault(name, "")
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._targets[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


def _command(name: str, target: str) -> TyperCommand | TyperGroup:
    module_name, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if isinstance(found, typer.Typer):
        command = typer.main.get_group(found)  # no completion options: those are the root's
    else:
        single = typer.Typer(rich_markup_mode="markdown", add_completion=False)
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command  # type: ignore[return-value]
