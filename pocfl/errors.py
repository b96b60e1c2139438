"""Exception hierarchy of pocfl.

::

    PocflError
    ├── ConfigError          bad options, missing keys, no deployment for this chain
    ├── PayoutInputError     payout inputs out of range (also a ValueError; pocfl.payouts)
    ├── ShapleyError         estimator inputs that cannot be honoured (also a ValueError; aggregator.shapley)
    ├── BuildError           the contract build failed (also a RuntimeError; pocfl.contracts.build)
    └── ChainError           anything the chain refused or failed at
        ├── ChainUnavailableError  nothing answers at the RPC URL (an outage: waited out by long-running commands)
        │   └── ChainConnectionError  the node stopped answering during a call (dropped, refused, timed out)
        ├── InsufficientFundsError  the sender cannot pay for the transaction (gas + value)
        ├── NonceConflictError      another transaction of the sender took the nonce (raced, or already known)
        ├── ChainRequestError       any other refusal of the node or of web3 (a malformed request, a node error)
        ├── ContractRevert   a named custom error of the contract (generated subclasses per error)
        ├── UnknownRevert    a revert without recognisable data
        └── TransactionFailedError  a mined transaction with status 0

The transport errors (``ChainConnectionError``, ``InsufficientFundsError``, ``NonceConflictError``,
``ChainRequestError``) are made in one place, :mod:`pocfl.chain.transport`, from the exceptions of web3, eth-tester
and requests: no other code reads those libraries' messages or class names.
"""

from __future__ import annotations


class PocflError(Exception):
    """Root of every error pocfl raises on purpose.

    ``fix`` optionally names, in words of no particular front end, the setting the caller has to change (for example
    ``"chain-url"``: nothing answers at the chain's URL). The message itself names no command-line option: the CLI
    renders ``fix`` as its own options (``pocfl.cli.output.FIX_HINTS``); other callers (the Flower apps, scripts)
    read the message alone.
    """

    fix: str | None = None

    def __init__(self, *args: object, fix: str | None = None) -> None:
        super().__init__(*args)
        if fix is not None:
            self.fix = fix


class ConfigError(PocflError):
    """A command or function was configured wrongly; the message says how to fix it."""


class ChainError(PocflError):
    """The chain refused a call or could not be reached."""


class ChainUnavailableError(ChainError):
    """Nothing answers at the chain's RPC URL (refused, dropped, timed out): an outage, not a refusal."""


class ChainConnectionError(ChainUnavailableError):
    """The node stopped answering during a call (a dropped or refused connection, a timeout): an outage."""


class InsufficientFundsError(ChainError):
    """The sender's balance cannot pay for the transaction (gas + value); nothing was sent."""


class NonceConflictError(ChainError):
    """The node refused a transaction whose nonce another one of the same sender took (raced, or already known)."""


class ChainRequestError(ChainError):
    """The node or the web3 library refused a request for another reason (the message quotes it)."""


class TransactionFailedError(ChainError):
    """A transaction was mined but reverted (status 0) without decodable data."""
