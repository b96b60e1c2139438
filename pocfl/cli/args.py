"""The project id and round number every command takes the same way: ``pocfl COMMAND ID [--round N]``.

The project id is a positional argument everywhere (``pocfl train 3``, ``pocfl round show 3``); ``train``,
``aggregate`` and ``audit`` took it as ``--project ID`` before, which they still accept as a hidden alias so older
scripts keep working. The round is ``--round N`` everywhere (``round show`` still accepts it positionally).
``chain advance --to POINT --project ID`` keeps its option: the command's subject is the chain, and the project
only says whose window ``POINT`` names (it is optional there).
"""

from __future__ import annotations

from typing import Annotated

import click
import typer

from pocfl.cli.common import option

__all__ = ["ProjectArg", "ProjectOptAlias", "RoundArgAlias", "one_value", "project_id"]

ProjectArg = Annotated[
    int | None,
    typer.Argument(min=1, metavar="ID", help="Project id (see `pocfl project list`).", show_default=False),
]
ProjectOptAlias = Annotated[
    int | None, option("--project", min=1, metavar="ID", hidden=True, help="The project id (older spelling).")
]
RoundArgAlias = Annotated[
    int | None, typer.Argument(min=0, metavar="[ROUND]", hidden=True, help="The round (older spelling of --round).")
]


def one_value(name: str, given: int | None, alias: int | None, alias_name: str) -> int | None:
    """The value given as ``name`` or, in its older spelling, as ``alias_name``; None when neither.

    Raises
    ------
    click.UsageError
        Both are given and differ (exit status 2, like any other misuse of the command line).
    """
    if given is not None and alias is not None and given != alias:
        raise click.UsageError(f"{name} {given} and {alias_name} {alias} disagree: give it once")
    return given if given is not None else alias


def project_id(given: int | None, alias: int | None) -> int:
    """The project id, positional or (older spelling) ``--project``.

    Raises
    ------
    click.UsageError
        Neither is given, or both are and differ.
    """
    value = one_value("ID", given, alias, "--project")
    if value is None:
        raise click.UsageError("Missing argument 'ID' (the project id; see `pocfl project list`).")
    return value
