"""The ``pocfl`` command line (entry point ``pocfl = "pocfl.cli.main:app"``).

Command groups live in one module each; this module only assembles them::

    pocfl chain up|down|status|fund|advance     local node
    pocfl ipfs up|down|status                   local IPFS daemon
    pocfl store put|get|has|pin|cid|verify|info content store (embedded or IPFS)
    pocfl account new|import|list|show|encryption-key   keystores (in <state dir>/keystores), balances
    pocfl deploy                                deploy the marketplace, write the deployment file
    pocfl project create|list|status|allow|cancel|finalize|withdraw
    pocfl register|leave|release-stake|claim    trainers
    pocfl round submit|post|fail|fetch|show     scripted rounds (project id first, --round N)
    pocfl train|aggregate|audit ID              trainer, aggregator node, auditor
    pocfl demo                                  the whole flow, reconciled to the wei
    pocfl --version
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from pocfl.cli import (
    account_cmd,
    aggregate_cmd,
    audit_cmd,
    chain_cmd,
    demo_cmd,
    deploy_cmd,
    ipfs_cmd,
    project_cmd,
    round_cmd,
    store_cmd,
    train_cmd,
    trainer_cmd,
)

app = typer.Typer(
    name="pocfl",
    help="Proof-of-contribution marketplace for federated learning: escrowed budgets, scored rounds, "
    "pull payments. Try `pocfl demo`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.add_typer(chain_cmd.app, name="chain")
app.add_typer(ipfs_cmd.app, name="ipfs")
app.add_typer(store_cmd.app, name="store")
app.add_typer(account_cmd.app, name="account")
app.command("deploy")(deploy_cmd.deploy)
app.add_typer(project_cmd.app, name="project")
app.command("register", rich_help_panel="Trainers")(trainer_cmd.register)
app.command("leave", rich_help_panel="Trainers")(trainer_cmd.leave)
app.command("release-stake", rich_help_panel="Trainers")(trainer_cmd.release_stake)
app.command("claim", rich_help_panel="Trainers")(trainer_cmd.claim)
app.command("train", rich_help_panel="Trainers")(train_cmd.train)
app.add_typer(round_cmd.app, name="round")
app.command("demo")(demo_cmd.demo)
app.command("aggregate", rich_help_panel="Aggregator")(aggregate_cmd.aggregate)
app.command("audit", rich_help_panel="Auditors")(audit_cmd.audit)


def reflow(doc: str) -> str:
    r"""A command's docstring with each paragraph on one line, for the help to wrap at the terminal's width.

    typer keeps the single line breaks of every paragraph after the first, so a docstring wrapped at 120 columns
    came out ragged at 80 or 100. A paragraph that starts with ``\b`` and the lines of a ``- `` list keep theirs.
    """
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else re.sub(r"\n(?!- )", " ", p) for p in paragraphs)


def _reflow_commands(group: typer.Typer) -> None:
    """Give every command of ``group`` and its subgroups the reflowed docstring as help (unless it has its own)."""
    for command in group.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = reflow(command.callback.__doc__)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_commands(sub.typer_instance)


_reflow_commands(app)


def pocfl_version() -> str:
    """The installed package's version (``unknown`` when it runs from a source tree that was never installed)."""
    try:
        return package_version("pocfl")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pocfl {pocfl_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Proof-of-contribution marketplace for federated learning: escrowed budgets, scored rounds, pull payments.

    Try `pocfl demo`.
    """


def main() -> None:
    """Run the CLI (``python -m pocfl.cli``)."""
    app()
