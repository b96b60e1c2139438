"""``pocfl deploy``: deploy the marketplace and record it in the deployment file."""

from __future__ import annotations

from typing import Annotated

import typer

from pocfl.cli.output import eth_wei, guarded, kv_table
from pocfl.cli.session import DeploymentOpt, JsonOpt, KeyOpt, KeystoreOpt, MarketOpt, RpcOpt, Session
from pocfl.deployment import Deployment, check_code, load_deployments, record_deployment
from pocfl.errors import ConfigError


@guarded
def deploy(
    reuse: Annotated[
        bool,
        typer.Option("--reuse", help="Keep the recorded deployment when its contract is live instead of redeploying."),
    ] = False,
    rpc: RpcOpt = None,
    key: KeyOpt = "POCFL_PRIVATE_KEY",
    keystore: KeystoreOpt = None,
    json_out: JsonOpt = False,
    deployment: DeploymentOpt = None,
    market: MarketOpt = None,
) -> None:
    """Deploy PocMarketplace and record it in the deployment file for later commands."""
    from pocfl.chain.client import MarketplaceClient

    if market:
        raise ConfigError("--market names an existing contract; `pocfl deploy` creates a new one (drop --market)")
    with Session(rpc, key, keystore, json_out, deployment, None) as s:
        chain = s.chain()
        chain_id = chain.chain_id
        if reuse:
            existing = load_deployments(s.deployment_file).get(chain_id)
            if existing is not None:
                try:
                    check_code(existing.address, bytes(chain.w3.eth.get_code(existing.address)), chain_id)  # type: ignore[arg-type]
                except ConfigError as exc:
                    s.out.note(f"not reusing the recorded deployment: {exc}")
                else:
                    s.out.note(f"reusing the live deployment at {existing.address} (--reuse)")
                    s.out.result(
                        {**existing.to_json(), "reused": True},
                        lambda: s.out.print(f"PocMarketplace already deployed at [bold]{existing.address}[/bold]"),
                    )
                    return
        account = s.account()
        with s.out.status(f"deploying PocMarketplace from {account.address}"):
            client, receipt = MarketplaceClient.deploy(chain, account)
        record = Deployment.new(
            chain_id=chain_id,
            address=client.address,
            rpc=s.rpc,
            block_number=receipt.block_number,
            tx_hash=receipt.tx_hash,
            deployer=account.address,
        )
        previous = None
        if s.throwaway:
            s.out.warn(f"--rpc {s.rpc} is a throwaway chain: the contract vanishes on exit; not recording it")
        else:
            previous = record_deployment(s.deployment_file, record)
        fee = receipt.fee_wei

        def human() -> None:
            s.out.print(f"Deployed PocMarketplace at [bold]{record.address}[/bold] on chain {chain_id}")
            s.out.table(
                kv_table(
                    [
                        ("tx", record.tx_hash),
                        ("block", record.block_number),
                        ("gas", f"{receipt.gas_used} ({eth_wei(fee)})"),
                        ("deployer", record.deployer),
                        ("compiler", record.compiler),
                        ("recorded in", "(not recorded)" if s.throwaway else str(s.deployment_file)),
                    ]
                )
            )
            if previous is not None and previous.address != record.address:
                s.out.note(f"replaced the earlier deployment {previous.address} for chain {chain_id}")

        s.out.result({**record.to_json(), "reused": False, "gas_used": receipt.gas_used, "fee_wei": fee}, human)
