"""``pocfl deploy``: deploy the marketplace and record it in the deployment file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pocfl.cli.output import eth_wei, guarded, kv_table
from pocfl.cli.session import Session, connected
from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.deploy import DeployedMarketplace


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
    from pocfl.deploy import deploy_marketplace, live_deployment

    if s.market_override is not None:
        raise ConfigError("--market names an existing contract; `pocfl deploy` creates a new one (drop --market)")
    chain = s.chain()
    if reuse:
        existing, why_not = live_deployment(chain, s.deployment_file)
        if why_not is not None:
            s.out.note(f"not reusing the recorded deployment: {why_not}")
        if existing is not None:
            s.out.note(f"reusing the live deployment at {existing.address} (--reuse)")
            verifier = _verifier(s, with_verifier, slots, sketch_dim, zk_cache, srs_dir)
            s.out.result(
                {**existing.to_json(), "reused": True, "verifier": verifier},
                lambda: s.out.print(f"PocMarketplace already deployed at [bold]{existing.address}[/bold]"),
            )
            return
    account = s.account()
    with s.out.status(f"deploying PocMarketplace from {account.address}"):
        deployed = deploy_marketplace(
            chain, account, rpc=s.rpc, deployment_file=s.deployment_file, record=not s.throwaway
        )
    if s.throwaway:
        s.out.warn(f"--rpc {s.rpc} is a throwaway chain: the contract vanishes on exit; not recording it")
    verifier = _verifier(s, with_verifier, slots, sketch_dim, zk_cache, srs_dir)
    _render_deployed(s, deployed, verifier)


def _render_deployed(s: Session, deployed: DeployedMarketplace, verifier: dict[str, Any] | None) -> None:
    """``deploy``'s output: the new deployment, and its round verifier."""
    record, receipt, previous = deployed.record, deployed.receipt, deployed.previous
    fee = receipt.fee_wei

    def human() -> None:
        s.out.print(f"Deployed PocMarketplace at [bold]{record.address}[/bold] on chain {record.chain_id}")
        s.out.table(
            kv_table(
                [
                    ("tx", record.tx_hash),
                    ("block", record.block_number),
                    ("gas", f"{receipt.gas_used} ({eth_wei(fee)})"),
                    ("deployer", record.deployer),
                    ("compiler", record.compiler),
                    ("recorded in", str(s.deployment_file) if deployed.recorded else "(not recorded)"),
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
            s.out.note(f"replaced the earlier deployment {previous.address} for chain {record.chain_id}")

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
