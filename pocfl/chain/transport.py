"""The one place where the exceptions of web3, eth-tester, py-evm and requests become pocfl's typed chain errors.

Nodes and libraries say the same failure in their own words (anvil ``insufficient funds for gas * price + value``,
py-evm ``Sender ... cannot afford txn gas``; ``nonce too low``, ``already known``, ``replacement transaction
underpriced``, py-evm ``Invalid transaction nonce``) and with their own classes (requests' ``ConnectionError`` is no
builtin ``ConnectionError``). The chain layer sends and calls inside :func:`node_errors`, so callers match on
:mod:`pocfl.errors` types only:

- a revert: the contract's named error (:func:`pocfl.chain.reverts.decode_revert`);
- :class:`~pocfl.errors.InsufficientFundsError`, :class:`~pocfl.errors.NonceConflictError`;
- :class:`~pocfl.errors.ChainConnectionError`: the node stopped answering (an outage, waited out by the
  long-running commands);
- anything else passes unchanged. :func:`request_error` turns what is left of these libraries' exceptions into a
  :class:`~pocfl.errors.ChainRequestError` for a front end (the CLI) that must show every failure as an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pocfl.chain.revert_base import ContractRevert, UnknownRevert
from pocfl.errors import (
    ChainConnectionError,
    ChainError,
    ChainRequestError,
    InsufficientFundsError,
    NonceConflictError,
    PocflError,
)
from pocfl.waiting import is_transient

__all__ = ["chain_error", "node_errors", "request_error"]

_FUNDS = ("insufficient funds", "cannot afford")
_NONCE = ("nonce too low", "already known", "underpriced", "invalid transaction nonce")
_CHAIN_MODULES = ("web3.", "eth_utils.", "eth_tester.", "eth.", "requests.", "urllib3.", "aiohttp.")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _lost_connection(exc: BaseException) -> bool:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout
    from web3.exceptions import ProviderConnectionError, TimeExhausted

    lost = (ConnectionError, TimeoutError, RequestsConnectionError, Timeout, ProviderConnectionError, TimeExhausted)
    return isinstance(exc, lost) or is_transient(exc)


def chain_error(exc: BaseException) -> ChainError | None:
    """The typed error for a failure of the node or of its libraries, or None (not one, or none of the typed ones).

    pocfl's own errors are returned as they are when they are :class:`ChainError`, else None.
    """
    if isinstance(exc, PocflError):
        return exc if isinstance(exc, ChainError) else None
    from pocfl.chain.reverts import decode_revert

    revert = decode_revert(exc)
    if revert is not None:
        return revert
    text = _first_line(exc)
    lowered = text.lower()
    if any(words in lowered for words in _FUNDS):
        return InsufficientFundsError("the account cannot pay for this transaction (gas + value)", fix="funds")
    if any(words in lowered for words in _NONCE):
        raced = "another one from this account raced it; retry"
        return NonceConflictError(f"the node refused the transaction ({text}): {raced}")
    if _lost_connection(exc):
        return ChainConnectionError(f"lost the connection to the chain ({type(exc).__name__}): is the node still up?")
    return None


def request_error(exc: BaseException) -> ChainError | None:
    """:func:`chain_error`, else a :class:`ChainRequestError` for the chain libraries' other exceptions.

    Those of web3, eth-tester, py-evm and requests come only from the chain's transport; None for anything else
    (a bug).
    """
    typed = chain_error(exc)
    if typed is not None:
        return typed
    if (type(exc).__module__ + ".").startswith(_CHAIN_MODULES):
        return ChainRequestError(f"the chain refused the request ({type(exc).__name__}: {_first_line(exc)})")
    return None


@contextmanager
def node_errors() -> Iterator[None]:
    """Run a send or a call to the node, raising the typed error (:func:`chain_error`) of what fails in it."""
    try:
        yield
    except PocflError:
        raise
    except Exception as exc:
        typed = chain_error(exc)
        if typed is None:
            raise
        if isinstance(typed, ContractRevert | UnknownRevert):
            raise typed from None  # the named error says all the backend's exception did
        raise typed from exc
