"""``pocfl chain``: a local anvil node for multi-process use, and local-node conveniences."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pocfl.cli.common import option
from pocfl.cli.output import Output, eth, eth_wei, guarded, node_down, node_running, node_status, utc
from pocfl.cli.parse import parse_address, parse_eth
from pocfl.cli.session import JsonOpt, Session, connected
from pocfl.deployment import state_dir
from pocfl.local_node import (
    STATE_FILE_NAME,
    NodeRecord,
    node_file,
    node_info,
    pid_alive,
    read_node,
    remove_node,
)
from pocfl.rpc import rpc_call

if TYPE_CHECKING:
    from pocfl.chain.backends import AnvilProcess

app = typer.Typer(
    name="chain",
    help="Run a local anvil node that survives between commands, fund accounts on it, move its clock.",
    no_args_is_help=True,
)

DEFAULT_PORT = 8545
DEFAULT_BLOCK_TIME = 1


@app.command("up")
@guarded
def up(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1 only).")] = DEFAULT_PORT,
    state: Annotated[
        Path | None,
        option(
            metavar="FILE",
            help="Load the chain from and save it to FILE so it survives restarts. "
            f"Default: <state dir>/{STATE_FILE_NAME}.",
        ),
    ] = None,
    no_state: Annotated[bool, typer.Option("--no-state", help="Start an empty chain that is not saved.")] = False,
    block_time: Annotated[
        int,
        typer.Option(
            "--block-time",
            min=0,
            metavar="SECONDS",
            help="Mine a block every SECONDS so the chain's clock follows the wall clock (windows open and close "
            "on time without transactions); 0 mines only on demand.",
        ),
    ] = DEFAULT_BLOCK_TIME,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Stay in the foreground until Ctrl-C instead of detaching.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start a local anvil node in the background and remember it for later commands.

    Commands without --rpc then talk to it. Stop it with `pocfl chain down`.
    """
    from pocfl.local_node import start_node

    out = Output(json_out)
    home = state_dir()
    state_file = None if no_state else (state or home / STATE_FILE_NAME).resolve()
    start = start_node(port, state_file, block_time, detach=not foreground, progress=out.status)
    record, info = start.record, start.info
    if not start.started:
        node_running(out, "chain", info)
        return

    def human() -> None:
        out.print(f"anvil is running at [bold]{record.url}[/bold] (pid {record.pid}, chain id {info['chain_id']})")
        mining = f"a block every {block_time} s" if block_time else "on demand only (the clock moves with transactions)"
        out.print(f"mining: {mining}")
        if state_file:
            out.print(f"chain state is saved to {state_file} when it stops")
        out.print(f"log: {record.log_file}")
        out.print("Commands without --rpc now use this node. Next steps:")
        out.print("  pocfl account new --keystore owner.json    # or export POCFL_PRIVATE_KEY=...")
        out.print("  pocfl chain fund ADDRESS --eth 10          # from the node's pre-funded dev account")
        out.print("  pocfl deploy")
        out.print("Stop it with Ctrl-C." if foreground else "Stop it with `pocfl chain down`.")

    out.result({"started": True, **info}, human)
    if foreground and start.process is not None:
        _wait_foreground(start.process, out)


def _wait_foreground(proc: AnvilProcess, out: Output) -> None:
    try:
        while pid_alive(proc.pid):
            time.sleep(0.5)
        out.warn("anvil exited")
    except KeyboardInterrupt:
        out.note("stopping anvil")
    finally:
        proc.stop()
        remove_node()


@app.command("down")
@guarded
def down(json_out: JsonOpt = False) -> None:
    """Stop the node started by `pocfl chain up` (by its recorded PID) and forget it."""
    from pocfl.local_node import stop_node

    node_down(Output(json_out), "node", stop_node(), "state_file", _stopped_lines)


def _stopped_lines(record: NodeRecord) -> list[str]:
    lines = [f"Stopped anvil (pid {record.pid}) at {record.url}."]
    if record.state_file:
        lines.append(f"Its chain is saved in {record.state_file}; `pocfl chain up` resumes it.")
    return lines


@app.command("status")
@guarded
def status(json_out: JsonOpt = False) -> None:
    """Show the node started by `pocfl chain up`. Exits 1 when none is running."""
    node_status(Output(json_out), "chain", read_node(), _status_info, _status_rows, node_file())


def _status_rows(record: NodeRecord, info: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [
        ("chain id", info["chain_id"]),
        ("state file", record.state_file or "none (not saved)"),
        ("log", record.log_file),
        ("started", record.started_at),
    ]
    if info["running"]:
        rows += [("block", info["block_number"]), ("block time", utc(info["block_timestamp"]))]
    return rows


def _status_info(record: NodeRecord) -> dict[str, Any]:
    """:func:`~pocfl.local_node.node_info`, with the latest block's number and time when the node runs."""
    info = node_info(record)
    if info["running"]:
        block = rpc_call(record.url, "eth_getBlockByNumber", ["latest", False]) or {}
        info["block_number"] = int(block.get("number", "0x0"), 16)
        info["block_timestamp"] = int(block.get("timestamp", "0x0"), 16)
    return info


@app.command("fund")
@guarded
@connected()
def fund(
    address: Annotated[
        str | None, typer.Argument(help="Account to fund. Default: the --key/--keystore account.", show_default=False)
    ] = None,
    amount: Annotated[str, typer.Option("--eth", help="Amount of ETH to send (decimal).")] = "10",
    *,
    s: Session,
) -> None:
    """Send ETH to an account from the node's pre-funded dev account (local nodes only)."""
    from pocfl.devchain import fund_account

    wei = parse_eth(amount, "--eth")
    to = parse_address(address, "ADDRESS") if address else s.account().address
    chain = s.chain()
    if s.throwaway:
        s.out.warn(f"--rpc {s.rpc} is a throwaway chain: the funds vanish when this command exits")
    funded = fund_account(chain, s.rpc, to, wei)
    s.out.result(
        {"address": funded.address, "funded_wei": funded.funded_wei, "balance_wei": funded.balance_wei},
        lambda: s.out.print(f"Sent {eth(wei)} ETH to {to}; balance {eth_wei(funded.balance_wei)}."),
    )


@app.command("advance")
@guarded
@connected()
def advance(
    seconds: Annotated[
        int | None, typer.Argument(min=0, help="Seconds to move the clock forward.", show_default=False)
    ] = None,
    to: Annotated[
        str | None,
        option(
            "--to",
            metavar="POINT",
            help="Move the clock exactly to a point of the project's current round: start (round 0 opens), "
            "submission-close (submissions closed, posting open) or aggregation-close (the round may be failed); "
            "or to a unix TIMESTAMP.",
        ),
    ] = None,
    project: Annotated[int | None, option("--project", min=1, metavar="ID", help="The project of --to POINT.")] = None,
    *,
    s: Session,
) -> None:
    """Move a local node's clock forward and mine a block (local nodes only).

    Relative (`advance SECONDS`) or exact (`advance --to submission-close --project 1`): the exact form never
    overshoots into the next window. The clock never moves backwards.
    """
    from pocfl.devchain import advance_clock

    move = advance_clock(s, seconds, to, project)
    document = {"before": move.before, "timestamp": move.timestamp, "advanced": move.advanced, "target": move.target}

    def human() -> None:
        if move.timestamp == move.before and seconds is None:
            s.out.print(f"Chain time {utc(move.before)} is already at or past {utc(move.target)}; not moved.")
        else:
            s.out.print(f"Chain time is now {utc(move.timestamp)} (+{move.advanced} s).")

    s.out.result(document, human)
