"""``pocfl account``: create, import and list encrypted keystores; show an account's balance and credits.

Keystores go to ``<state dir>/keystores/<address>.json`` unless ``--keystore FILE`` says otherwise (never the
current folder, often a git checkout), mode 0600. Private keys never go on the command line: ``account import``
reads one from stdin or from an environment variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pocfl.cli.common import option
from pocfl.cli.output import Output, error_message, eth_wei, guarded, kv_table
from pocfl.cli.session import (
    PASSWORD_ENV,
    JsonOpt,
    PasswordFileOpt,
    Session,
    connected,
)
from pocfl.connection import read_password_file
from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.accounts import Keystore

app = typer.Typer(name="account", help="Create, import, list and inspect signing accounts.", no_args_is_help=True)

NewKeystoreOpt = Annotated[
    Path | None,
    option(
        "--keystore",
        envvar="POCFL_KEYSTORE",
        metavar="FILE",
        help="Where to write the encrypted key (mode 0600, never overwritten). "
        "Default: <state dir>/keystores/<address>.json.",
    ),
]


def _passwords(password_file: Path | None, out: Output) -> Callable[[Path], str]:
    """The password for a new keystore: ``--password-file``, else ``$POCFL_KEYSTORE_PASSWORD``, else a prompt."""

    def ask(path: Path) -> str:
        if password_file is not None:
            return read_password_file(password_file, out.warn)
        env = os.environ.get(PASSWORD_ENV)
        if env is not None:
            return env
        if not sys.stdin.isatty():
            raise ConfigError(
                f"set {PASSWORD_ENV} or give --password-file for the password of {path} (no terminal to prompt on)"
            )
        password: str = typer.prompt(f"Password to encrypt {path}", hide_input=True, confirmation_prompt=True, err=True)
        return password

    return ask


def _saved(out: Output, made: Keystore, verb: str) -> None:
    def human() -> None:
        out.print(f"{verb} account [bold]{made.address}[/bold] saved encrypted to {made.path}")
        out.print(f"Sign with --keystore {made.path} (or POCFL_KEYSTORE); the password comes from --password-file,")
        out.print(f"${PASSWORD_ENV} or a prompt. On a local node: `pocfl chain fund {made.address} --eth 10`.")

    out.result({"address": made.address, "keystore": str(made.path)}, human)


@app.command("new")
@guarded
def new(
    keystore: NewKeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new random account, encrypted in a keystore file (the key is never printed)."""
    from pocfl.accounts import new_keystore

    out = Output(json_out)
    _saved(out, new_keystore(keystore, _passwords(password_file, out)), "New")


@app.command("import")
@guarded
def import_(
    key_env: Annotated[
        str | None,
        option(
            "--key-env",
            metavar="ENV_VAR",
            help="Read the hex private key from this environment variable. Default: from stdin (a hidden prompt "
            "on a terminal).",
        ),
    ] = None,
    from_keystore: Annotated[
        Path | None,
        option(
            "--from-keystore",
            metavar="FILE",
            help="Import an existing keystore file instead (copied as it is: same password).",
        ),
    ] = None,
    keystore: NewKeystoreOpt = None,
    password_file: PasswordFileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import an existing account into an encrypted keystore in the state folder (never from the command line).

    The hex private key is read from stdin (`pocfl account import < key.txt`, or a hidden prompt), or from the
    environment variable named by --key-env; or --from-keystore FILE copies an existing keystore.
    """
    from pocfl.accounts import import_key, import_keystore

    out = Output(json_out)
    if from_keystore is not None:
        if key_env is not None:
            raise ConfigError("give --key-env or --from-keystore, not both")
        _saved(out, import_keystore(from_keystore, keystore), "Imported")
        return
    _saved(out, import_key(_read_key(key_env), keystore, _passwords(password_file, out)), "Imported")


def _read_key(key_env: str | None) -> str:
    """The hex key from the environment variable ``key_env``, else stdin (a hidden prompt on a terminal)."""
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            raise ConfigError(f"environment variable {key_env} is not set: export the hex private key there")
        return value
    if sys.stdin.isatty():
        prompted: str = typer.prompt("Hex private key", hide_input=True, err=True)
        return prompted
    return sys.stdin.readline()


@app.command("list")
@guarded
def list_(json_out: JsonOpt = False) -> None:
    """List the keystores in <state dir>/keystores with their addresses (nothing is decrypted)."""
    from pocfl.accounts import keystore_dir, list_keystores

    out = Output(json_out)
    found = list_keystores()

    def human() -> None:
        if not found:
            out.print(f"No keystores in {keystore_dir()}: create one with `pocfl account new` or `account import`.")
            return
        table = Table("address", "keystore")
        for item in found:
            table.add_row(item.address, str(item.path))
        out.table(table)

    out.result(
        {"folder": str(keystore_dir()), "keystores": [{"address": k.address, "keystore": str(k.path)} for k in found]},
        human,
    )


@app.command("encryption-key")
@guarded
def encryption_key(
    key_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="[FILE]",
            help="Where to write the X25519 key pair (JSON, mode 0600, never overwritten). "
            "Default: <state dir>/keys/aggregator.key.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Aggregator: create the key pair trainers encrypt updates to (`round submit --encrypt-to PUBLIC_KEY`)."""
    from pocfl.accounts import new_encryption_key

    out = Output(json_out)
    key_file, pair = new_encryption_key(key_file)

    def human() -> None:
        out.print(f"Encryption key pair saved to {key_file} (keep it secret; `round fetch --decrypt-key` reads it).")
        out.print(f"Public key for trainers: [bold]{pair.public_key_hex}[/bold]")

    out.result({"key_file": str(key_file), "public_key": pair.public_key_hex}, human)


@app.command("show")
@guarded
@connected()
def show(
    *,
    s: Session,
) -> None:
    """Show the account's address, ETH balance and claimable marketplace credits."""
    from pocfl.accounts import show_account

    view = show_account(s)
    note = error_message(view.credits_error) if view.credits_error is not None else ""
    document: dict[str, Any] = {
        "address": view.address,
        "chain_id": view.chain_id,
        "balance_wei": view.balance_wei,
        "credits_wei": view.credits_wei,
    }
    if note:
        document["note"] = note

    def human() -> None:
        rows: list[tuple[str, Any]] = [
            ("address", view.address),
            ("chain id", view.chain_id),
            ("balance", eth_wei(view.balance_wei)),
            ("claimable", eth_wei(view.credits_wei) if view.credits_wei is not None else "unknown (no deployment)"),
        ]
        s.out.table(kv_table(rows))
        if note:
            s.out.note(note)
        elif view.credits_wei:
            s.out.note("withdraw them with `pocfl claim`")

    s.out.result(document, human)
