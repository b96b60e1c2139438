"""Signing accounts.

Keys come from an environment variable or an encrypted keystore file, never from
code or the command line (which would leak into shell history and ``ps``); transactions are signed
locally, so the same code works on every chain.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from pocfl.errors import ConfigError
from pocfl.fsutil import PRIVATE, write_json_atomic

DEFAULT_KEY_ENV = "POCFL_PRIVATE_KEY"
PASSWORD_ENV = "POCFL_KEYSTORE_PASSWORD"


def account_from_env(name: str = DEFAULT_KEY_ENV) -> LocalAccount:
    """Load the hex private key held in environment variable ``name``.

    Raises
    ------
    ConfigError
        If the variable is unset or does not hold a valid key.
    """
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set: export the account's private key there", fix="key-env"
        )
    try:
        account: LocalAccount = Account.from_key(value.strip())
    except Exception as exc:
        raise ConfigError(f"{name} does not hold a valid private key ({exc.__class__.__name__})") from None
    return account


def _password(password: str | None, prompt: bool) -> str:
    if password is not None:
        return password
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    if prompt:
        return getpass.getpass("Keystore password: ")
    raise ConfigError(f"set {PASSWORD_ENV} to the keystore password (or run interactively)")


def account_from_keystore(
    path: str | os.PathLike[str], password: str | None = None, prompt: bool = True
) -> LocalAccount:
    """Decrypt a V3 keystore file; the password comes from the argument, ``$POCFL_KEYSTORE_PASSWORD`` or a prompt.

    Raises
    ------
    ConfigError
        If the file is missing, malformed, or the password is wrong.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"keystore file {file} does not exist (create one with `pocfl account new`)")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file} is not a JSON keystore: {exc}") from None
    try:
        key = Account.decrypt(data, _password(password, prompt))
    except ValueError:
        raise ConfigError(f"wrong password for keystore {file}") from None
    account: LocalAccount = Account.from_key(key)
    return account


def create_keystore(path: str | os.PathLike[str], password: str, overwrite: bool = False) -> LocalAccount:
    """Generate a new random account and write it encrypted (scrypt) to ``path`` with mode 0600."""
    file = Path(path)
    if file.exists() and not overwrite:  # early, before the slow scrypt; the write below is exclusive anyway
        raise ConfigError(f"{file} exists; refusing to overwrite a keystore")
    if not password:
        raise ConfigError("refusing to encrypt a keystore with an empty password")
    account: LocalAccount = Account.create()
    encrypted = Account.encrypt(account.key, password)
    try:
        # 0600 from creation, even over an older, wider file (O_TRUNC kept that file's mode); never half-written.
        write_json_atomic(file, encrypted, mode=PRIVATE, exclusive=not overwrite, indent=None)
    except FileExistsError:
        raise ConfigError(f"{file} exists; refusing to overwrite a keystore") from None
    return account


def new_account() -> LocalAccount:
    """A fresh random account (for demos and tests on local chains; fund it with ``Chain.fund``)."""
    account: LocalAccount = Account.create()
    return account
