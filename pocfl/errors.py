"""Exception hierarchy of pocfl.

::

    PocflError
    ├── ConfigError          bad options, missing keys, no deployment for this chain
    └── ChainError           anything the chain refused or failed at
        ├── ChainUnavailableError  nothing answers at the RPC URL (an outage: waited out by long-running commands)
        ├── ContractRevert   a named custom error of the contract (generated subclasses per error)
        ├── UnknownRevert    a revert without recognisable data
        └── TransactionFailedError  a mined transaction with status 0
"""

from __future__ import annotations


class PocflError(Exception):
    """Root of every error pocfl raises on purpose."""


class ConfigError(PocflError):
    """A command or function was configured wrongly; the message says how to fix it."""


class ChainError(PocflError):
    """The chain refused a call or could not be reached."""


class ChainUnavailableError(ChainError):
    """Nothing answers at the chain's RPC URL (refused, dropped, timed out): an outage, not a refusal."""


class TransactionFailedError(ChainError):
    """A transaction was mined but reverted (status 0) without decodable data."""
