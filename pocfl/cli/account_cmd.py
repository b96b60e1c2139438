"""``pocfl account``: create an encrypted keystore, show an account's balance and credits."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pocfl.cli.output import Output, error_message, eth_wei, guarded, kv_table
from pocfl.cli.session import (
    PASSWORD_ENV,
    JsonOpt,
    Session,
    connected,
)
from pocfl.errors import ConfigError

app = typer.Typer(name="account", help="Create and inspect signing accounts.", no_args_is_help=True)


def _new_password(path: Path) -> str:
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(f"set {PASSWORD_ENV} to the password for {path} (no terminal to prompt on)")
    password: str = typer.prompt(f"Password to encrypt {path}", hide_input=True, confirmation_prompt=True, err=True)
    return password


@app.command("new")
@guarded
def new(
    keystore: Annotated[
        Path,
        typer.Option(
            "--keystore",
            envvar="POCFL_KEYSTORE",
            metavar="FILE",
            help=f"Where to write the encrypted key (mode 0600). Password from ${PASSWORD_ENV} or a prompt.",
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Create a new random account, encrypted in a keystore file (the key is never printed)."""
    from pocfl.accounts import new_keystore

    out = Output(json_out)
    account = new_keystore(keystore, _new_password)

    def human() -> None:
        out.print(f"New account [bold]{account.address}[/bold] saved encrypted to {keystore}")
        out.print(f"Use it with --keystore {keystore} (or POCFL_KEYSTORE); the password comes from {PASSWORD_ENV}")
        out.print(f"or a prompt. On a local node, fund it with `pocfl chain fund {account.address} --eth 10`.")

    out.result({"address": account.address, "keystore": str(keystore)}, human)


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
