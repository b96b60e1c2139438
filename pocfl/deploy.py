"""Deploying the marketplace and recording it in the deployment file (``pocfl deploy``), without terminal output.

:func:`live_deployment` is the recorded deployment when its contract still runs (``--reuse`` keeps it);
:func:`deploy_marketplace` deploys a new one and records it, unless the chain is a throwaway one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from pocfl.chain.backends import Chain
from pocfl.chain.types import Receipt
from pocfl.deployment import Deployment, check_code, load_deployments, record_deployment
from pocfl.errors import ConfigError


def live_deployment(chain: Chain, deployment_file: Path) -> tuple[Deployment | None, str | None]:
    """The deployment recorded for ``chain`` if its contract is live there.

    Returns
    -------
    deployment, why_not
        The live deployment and None; or None and why the recorded one is not live (None when nothing is
        recorded for the chain).
    """
    existing = load_deployments(deployment_file).get(chain.chain_id)
    if existing is None:
        return None, None
    try:
        check_code(existing.address, bytes(chain.w3.eth.get_code(existing.address)), chain.chain_id)  # type: ignore[arg-type]
    except ConfigError as exc:
        return None, str(exc)
    return existing, None


@dataclass(frozen=True)
class DeployedMarketplace:
    """A new deployment.

    Attributes
    ----------
    record
        What the deployment file records (address, block, transaction, deployer, compiler).
    receipt
        The deployment transaction.
    recorded
        Whether it was recorded (not on a throwaway chain).
    previous
        The record it replaced for the same chain, if any.
    """

    record: Deployment
    receipt: Receipt
    recorded: bool
    previous: Deployment | None


def deploy_marketplace(
    chain: Chain, account: LocalAccount, *, rpc: str, deployment_file: Path, record: bool = True
) -> DeployedMarketplace:
    """Deploy PocMarketplace from ``account`` and record it in ``deployment_file`` (unless ``record`` is False).

    Parameters
    ----------
    chain, account
        Where, and who pays.
    rpc
        The chain's RPC setting, recorded for later commands.
    deployment_file
        The deployment file.
    record
        False for a throwaway chain: its contract vanishes with it.
    """
    from pocfl.chain.client import MarketplaceClient

    client, receipt = MarketplaceClient.deploy(chain, account)
    deployment = Deployment.new(
        chain_id=chain.chain_id,
        address=client.address,
        rpc=rpc,
        block_number=receipt.block_number,
        tx_hash=receipt.tx_hash,
        deployer=account.address,
    )
    previous = record_deployment(deployment_file, deployment) if record else None
    return DeployedMarketplace(deployment, receipt, record, previous)


__all__ = ["DeployedMarketplace", "deploy_marketplace", "live_deployment"]
