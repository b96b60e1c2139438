"""``pocfl deploy``: deploy the marketplace and record it in the deployment file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pocfl.cli.output import eth_wei, guarded, kv_table
from pocfl.cli.session import Session, connected
from pocfl.deployment import Deployment, check_code, load_deployments, record_deployment
from pocfl.errors import ConfigError


@guarded
@connected()
def deploy(
    reuse: Annotated[
        bool,
        typer.Option("--reuse", help="Keep the recorded deployment when its contract is live instead of redeploying."),
    ] = False,
    with_verifier: Annotated[
        bool,
        typer.Option(
            "--with-verifier",
            help="Also set up the zero-knowledge round circuit (ezkl) and deploy its Halo2 verifier and the "
            "EzklRoundVerifier adapter, whose address projects pass as --verifier. Needs Node.js (solcjs). The SRS "
            "is generated locally unless --srs-dir holds kzg{logrows}.srs: local SRS = test-only trust.",
        ),
    ] = False,
    slots: Annotated[int, typer.Option("--slots", min=2, max=64, help="Circuit slots (max trainers per round).")] = 8,
    sketch_dim: Annotated[int, typer.Option("--sketch-dim", min=2, max=512, help="Committed feature size.")] = 16,
    zk_cache: Annotated[
        Path | None,
        typer.Option(
            "--zk-cache", metavar="DIR", help="Where the setup is kept. Default: <state dir>/zk.", show_default=False
        ),
    ] = None,
    srs_dir: Annotated[
        Path | None,
        typer.Option("--srs-dir", metavar="DIR", help="Folder of public kzg{logrows}.srs files.", show_default=False),
    ] = None,
    *,
    s: Session,
) -> None:
    """Deploy PocMarketplace and record it in the deployment file for later commands."""
    from pocfl.chain.client import MarketplaceClient

    if s.market_override is not None:
        raise ConfigError("--market names an existing contract; `pocfl deploy` creates a new one (drop --market)")
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
                verifier = _verifier(s, with_verifier, slots, sketch_dim, zk_cache, srs_dir)
                s.out.result(
                    {**existing.to_json(), "reused": True, "verifier": verifier},
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
    verifier = _verifier(s, with_verifier, slots, sketch_dim, zk_cache, srs_dir)

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
        if verifier is not None:
            s.out.print(
                f"Round verifier (EzklRoundVerifier) at [bold]{verifier['adapter']}[/bold] for circuit "
                f"{verifier['circuit']} (Halo2Verifier {verifier['halo2']}, "
                f"{verifier['halo2_runtime_bytes']} bytes); "
                f"setup in {verifier['setup_dir']}"
            )
        if previous is not None and previous.address != record.address:
            s.out.note(f"replaced the earlier deployment {previous.address} for chain {chain_id}")

    s.out.result(
        {**record.to_json(), "reused": False, "gas_used": receipt.gas_used, "fee_wei": fee, "verifier": verifier},
        human,
    )


def _verifier(
    s: Session, wanted: bool, slots: int, sketch_dim: int, zk_cache: Path | None, srs_dir: Path | None
) -> dict[str, Any] | None:
    """Set up the round circuit (cached) and deploy its verifier pair; None unless ``--with-verifier``."""
    if not wanted:
        return None
    from zk.cache import default_cache_dir
    from zk.onchain import deploy_round_verifier
    from zk.prover import CircuitShape, RoundCircuitSetup

    cache = zk_cache or default_cache_dir()
    shape = CircuitShape(slots, sketch_dim)
    s.out.warn(
        "zero-knowledge setup: " + ("public SRS from " + str(srs_dir) if srs_dir else "local SRS (test-only trust)")
    )
    with s.out.status(f"setting up circuit {shape.key} (minutes for large shapes)") as update:
        setup = RoundCircuitSetup.build(shape, cache, srs_dir=srs_dir, progress=update)
    with s.out.status("deploying the Halo2 verifier and the EzklRoundVerifier adapter"):
        deployed = deploy_round_verifier(s.chain(), s.account(), setup, setup.directory / "verifier")
    return {**deployed.to_json(), "setup_dir": str(setup.directory), "tx_hashes": list(deployed.tx_hashes)}
