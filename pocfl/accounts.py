"""What an account does and holds on the marketplace: joining and leaving projects, stakes, credits, withdrawals.

The functions behind ``pocfl register``, ``leave``, ``release-stake``, ``claim`` and ``pocfl account``: each sends at
most one transaction (``claim``: one more per stake of an ended project it releases first) and returns a frozen
result (the receipts included) for the caller to render.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import Receipt
    from pocfl.connection import Connection
    from pocfl.updates import EncryptionKeyPair


@dataclass(frozen=True)
class StakeMove:
    """A stake paid into a project (``register``) or credited back to the trainer (``leave``, ``release-stake``)."""

    project_id: int
    trainer: str
    amount_wei: int
    receipt: Receipt


def register(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Register the signing account as a trainer of a project, paying its stake (refunded after the project ends)."""
    stake = market.project(project_id).params.stake
    receipt = market.register(project_id, stake)
    return StakeMove(project_id, market.sender, stake, receipt)


def leave(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Unregister before training starts; the stake is credited back (withdraw with :func:`claim`)."""
    return _credited(project_id, market.sender, market.leave(project_id), "TrainerLeft", "stakeCredited")


def release_stake(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Get the stake of an ended project credited back (withdraw with :func:`claim`)."""
    return _credited(project_id, market.sender, market.release_stake(project_id), "StakeReleased", "amount")


def _credited(project_id: int, trainer: str, receipt: Receipt, event: str, field: str) -> StakeMove:
    """The stake credited back, as the transaction's ``event`` reports it in ``field``."""
    return StakeMove(project_id, trainer, int(receipt.event(event).args[field]), receipt)


@dataclass(frozen=True)
class Withdrawal:
    """Credits withdrawn from ``account`` to ``to``; no transaction (``receipt`` None) when nothing was owed.

    ``released`` lists the stakes of ended projects :func:`claim` had credited back first (one transaction each),
    their amounts included in ``amount_wei``.
    """

    account: str
    to: str
    amount_wei: int
    receipt: Receipt | None
    released: tuple[StakeMove, ...] = ()


def held_stakes(market: MarketplaceClient, from_block: int = 0) -> list[int]:
    """The ended projects (finished or cancelled) that still hold a stake of the signing account, by id."""
    from pocfl.chain.types import ProjectStatus

    ids = sorted(
        {int(e.args["projectId"]) for e in market.events("TrainerRegistered", from_block, trainer=market.sender)}
    )
    ended = (ProjectStatus.FINISHED, ProjectStatus.CANCELLED)
    return [pid for pid in ids if market.project(pid).status in ended and market.trainer(pid, market.sender).stake_held]


def claim(market: MarketplaceClient, to: str | None = None, *, from_block: int = 0) -> Withdrawal:
    """Withdraw everything the signing account is owed (rewards and stakes, all projects).

    The stakes of ended projects are released first (``releaseStake``, one transaction per project: a stake
    is not a credit until then, and a trainer told to "claim" should not need ``release-stake`` first). Then the
    balance is read: with nothing owed no transaction is sent (no gas spent) and the amount is 0.

    Parameters
    ----------
    market
        The account's client.
    to
        Send the ether here instead of to the account.
    from_block
        First block to search for the account's registrations.
    """
    recipient = to or market.sender
    released = tuple(release_stake(market, pid) for pid in held_stakes(market, from_block))
    if market.credits(market.sender) == 0:
        return Withdrawal(market.sender, recipient, 0, None, released)
    amount, receipt = market.claim(to)
    return Withdrawal(market.sender, recipient, amount, receipt, released)


@dataclass(frozen=True)
class AccountView:
    """An account's ETH balance and claimable credits.

    ``credits_wei`` is None when the chain has no marketplace to ask (``credits_error`` says why).
    """

    address: str
    chain_id: int
    balance_wei: int
    credits_wei: int | None
    credits_error: ConfigError | None


def show_account(conn: Connection) -> AccountView:
    """The signing account of ``conn``: its address, balance and credits on the connection's marketplace."""
    account = conn.account()
    chain = conn.chain()
    balance = int(chain.w3.eth.get_balance(account.address))
    credits: int | None = None
    error: ConfigError | None = None
    try:
        credits = conn.market(signer=False).credits(account.address)
    except ConfigError as exc:
        error = exc
    return AccountView(account.address, chain.chain_id, balance, credits, error)


KEYSTORE_DIR = "keystores"


@dataclass(frozen=True)
class Keystore:
    """An encrypted keystore file and the address of the account it holds."""

    address: str
    path: Path


def keystore_dir() -> Path:
    """Where keystores go without a path, and where ``pocfl account list`` looks: ``<state dir>/keystores``."""
    from pocfl.deployment import state_dir

    return state_dir() / KEYSTORE_DIR


def _target(path: Path | None, address: str) -> Path:
    """``path``, or ``<state dir>/keystores/<address>.json`` (the folder created, mode 0700); never an existing file.

    Raises
    ------
    ConfigError
        The file exists.
    """
    if path is None:
        path = keystore_dir() / f"{address}.json"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a keystore (pick another path)")
    return path


def _save(account: LocalAccount, path: Path | None, password: Callable[[Path], str]) -> Keystore:
    """Encrypt ``account`` into a new keystore file (mode 0600 from creation, never overwritten)."""
    from eth_account import Account

    from pocfl.fsutil import PRIVATE, write_json_atomic

    file = _target(path, account.address)
    secret = password(file)  # asked only once the file is known to be free
    if not secret:
        raise ConfigError("refusing to encrypt a keystore with an empty password")
    try:
        write_json_atomic(file, Account.encrypt(account.key, secret), mode=PRIVATE, exclusive=True, indent=None)
    except FileExistsError:
        raise ConfigError(f"{file} exists; refusing to overwrite a keystore") from None
    return Keystore(account.address, file)


def new_keystore(path: Path | None, password: Callable[[Path], str]) -> Keystore:
    """A new random account, encrypted into the keystore file ``path`` (never overwritten).

    Without ``path`` the keystore goes to ``<state dir>/keystores/<address>.json`` (not the current folder, often a
    git checkout). ``password`` gives the password for the file; it is asked only once the file is known to be free.

    Raises
    ------
    ConfigError
        The file exists, or the password is empty.
    """
    from pocfl.chain.accounts import new_account

    return _save(new_account(), path, password)


def import_key(key_hex: str, path: Path | None, password: Callable[[Path], str]) -> Keystore:
    """Encrypt an existing hex private key into a new keystore (``path`` as in :func:`new_keystore`).

    Raises
    ------
    ConfigError
        ``key_hex`` is not 32 bytes of hex (the message never repeats it), or the file exists.
    """
    from eth_account import Account

    text = key_hex.strip()
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        raise ConfigError("not a private key: expected 64 hex digits (with or without 0x)")
    try:
        account: LocalAccount = Account.from_key(text)
    except ValueError:
        raise ConfigError("not a valid secp256k1 private key") from None
    return _save(account, path, password)


def _keystore_address(document: object) -> str | None:
    """The checksummed address a keystore document names, or None if it is not a keystore."""
    from eth_utils.address import is_address, to_checksum_address

    if not isinstance(document, dict) or not isinstance(document.get("crypto") or document.get("Crypto"), dict):
        return None
    address = document.get("address")
    if not isinstance(address, str) or not is_address(address if address.startswith("0x") else "0x" + address):
        return None
    return to_checksum_address(address if address.startswith("0x") else "0x" + address)


def import_keystore(source: Path, path: Path | None = None) -> Keystore:
    """Copy an existing keystore file into the state folder (or ``path``), mode 0600; its password is unchanged.

    Raises
    ------
    ConfigError
        ``source`` cannot be read or is not an encrypted keystore naming its address, or the target exists.
    """
    import json

    from pocfl.fsutil import PRIVATE, write_bytes_atomic

    try:
        data = source.read_bytes()
        address = _keystore_address(json.loads(data))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the keystore {source}: {exc}") from None
    if address is None:
        raise ConfigError(f"{source} is not an encrypted keystore with an address (a JSON file with crypto, address)")
    file = _target(path, address)
    try:
        write_bytes_atomic(file, data, mode=PRIVATE, exclusive=True)
    except FileExistsError:
        raise ConfigError(f"{file} exists; refusing to overwrite a keystore") from None
    return Keystore(address, file)


def list_keystores(folder: Path | None = None) -> list[Keystore]:
    """The keystores in ``folder`` (default ``<state dir>/keystores``), by file name; other files are skipped."""
    import json

    found = []
    for file in sorted((folder or keystore_dir()).glob("*.json")):
        try:
            address = _keystore_address(json.loads(file.read_bytes()))
        except (OSError, ValueError):
            continue
        if address is not None:
            found.append(Keystore(address, file))
    return found


def default_key_file() -> Path:
    """Where :func:`new_encryption_key` writes without a path: ``<state dir>/keys/aggregator.key``."""
    from pocfl.deployment import state_dir

    return state_dir() / "keys" / "aggregator.key"


def new_encryption_key(key_file: Path | None = None) -> tuple[Path, EncryptionKeyPair]:
    """A new X25519 key pair for trainers to encrypt updates to, saved to ``key_file`` (JSON, mode 0600).

    Without ``key_file`` it goes to :func:`default_key_file` (its folder created, mode 0700). Returns the file and
    the pair.

    Raises
    ------
    ConfigError
        The file exists (a key file is never overwritten).
    """
    from pocfl.updates import EncryptionKeyPair

    if key_file is None:
        key_file = default_key_file()
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if key_file.exists():
        raise ConfigError(f"{key_file} exists; refusing to overwrite a key file (pick another path)")
    pair = EncryptionKeyPair.generate()
    pair.save(key_file)  # 0600 from creation, and exclusive: a file created meanwhile is a KeyFileError, not lost
    return key_file, pair
