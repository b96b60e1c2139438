"""CIDs users name, checked against the content store before they go on chain.

A CID goes on chain only if the store holds its bytes, or nobody could fetch what the chain points at. The
messages name the command-line option the CID came from (the caller passes it), so they tell the user what to
change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pocfl.store import ContentStore


def stored_cid(store: ContentStore, text: str, option: str, instead: str) -> str:
    """The canonical spelling of a CID given by the user, checked to be in the content store.

    Parameters
    ----------
    store
        The store the command uses (``--ipfs``).
    text
        The CID as typed.
    option
        The option it came from, for messages (``--model-cid``).
    instead
        The option that stores a file itself (``--model FILE``), suggested in the message.

    Raises
    ------
    InvalidCidError
        Not a CID pocfl can verify.
    ObjectNotFoundError
        The store does not hold it; the message says how to store it first.
    """
    from pocfl.store import InvalidCidError, ObjectNotFoundError, parse_cid

    try:
        cid = str(parse_cid(text.strip()))
    except InvalidCidError as exc:
        raise InvalidCidError(f"{option}: {exc}") from None
    if not store.has(cid):
        err = ObjectNotFoundError(cid, store.location)
        err.args = (
            f"{option} {cid} is not in the content store {store.location}: store it first with "
            f"`pocfl store put FILE` (same --ipfs), or pass {instead}",
        )
        raise err
    return cid


def store_holds(store: ContentStore, cid: str) -> bool | None:
    """Whether the store holds ``cid`` (no fetch, no verification); ``False`` for a string that is no CID.

    ``None`` when the store cannot tell (an IPFS node that is down), so views still work without it.
    """
    from pocfl.store import InvalidCidError, StoreError

    try:
        return store.has(cid)
    except InvalidCidError:
        return False
    except StoreError:
        return None
