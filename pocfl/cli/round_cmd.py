"""``pocfl round``: low-level round transactions for scripted rounds (submit, post, fail) and ``show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pocfl.chain.types import ZERO_BYTES32, ProjectStatus, RoundPost
from pocfl.cli.common import project_events, tx_doc
from pocfl.cli.output import eth, guarded, short
from pocfl.cli.parse import parse_bytes32, parse_flags, parse_scores, read_bytes
from pocfl.cli.session import DeploymentOpt, JsonOpt, KeyOpt, KeystoreOpt, MarketOpt, RpcOpt, Session
from pocfl.errors import ConfigError

app = typer.Typer(
    name="round",
    help="Submit updates, post or fail rounds, and inspect them (for scripts; the FL runtime does this itself).",
    no_args_is_help=True,
)

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id.")]
RoundOpt = Annotated[
    int | None,
    typer.Option("--round", min=0, metavar="N", help="Round number. Default: the current round.", show_default=False),
]


@app.command("submit")
@guarded
def submit(
    project_id: ProjectId,
    cid: Annotated[str, typer.Option(metavar="CID", help="Content identifier of the (encrypted) update file.")],
    commitment: Annotated[str, typer.Option(metavar="0xHEX", help="32-byte hash binding the plaintext update.")],
    feature_commitment: Annotated[
        str | None, typer.Option(metavar="0xHEX", help="32-byte commitment to the update's features (for proofs).")
    ] = None,
    round_: RoundOpt = None,
    rpc: RpcOpt = None,
    key: KeyOpt = "POCFL_PRIVATE_KEY",
    keystore: KeystoreOpt = None,
    json_out: JsonOpt = False,
    deployment: DeploymentOpt = None,
    market: MarketOpt = None,
) -> None:
    """Trainer: submit an update for a round."""
    commit = parse_bytes32(commitment, "--commitment")
    features = parse_bytes32(feature_commitment, "--feature-commitment") if feature_commitment else ZERO_BYTES32
    with Session(rpc, key, keystore, json_out, deployment, market) as s:
        m = s.market()
        r = round_ if round_ is not None else m.project(project_id).current_round
        receipt = m.submit(project_id, r, cid, commit, features)
        index = int(receipt.event("UpdateSubmitted").args["index"])
        s.out.result(
            {"project_id": project_id, "round": r, "index": index, "trainer": m.sender, "tx": tx_doc(receipt)},
            lambda: s.out.print(f"Submitted {escape(cid)} to project {project_id}, round {r} (#{index})."),
        )


@app.command("post")
@guarded
def post(
    project_id: ProjectId,
    model_cid: Annotated[str, typer.Option(metavar="CID", help="CID of the new global model.")],
    scores: Annotated[
        str, typer.Option(metavar="S1,S2,...", help="One integer score per submission, in submission order.")
    ],
    outliers: Annotated[
        str | None,
        typer.Option(
            metavar="0,1,...", help="One 0/1 outlier flag per submission. Default: all 0.", show_default=False
        ),
    ] = None,
    report_hash: Annotated[str | None, typer.Option(metavar="0xHEX", help="32-byte hash of the round report.")] = None,
    hyperparams_hash: Annotated[
        str | None, typer.Option(metavar="0xHEX", help="32-byte hash of the next round's hyper-parameters.")
    ] = None,
    proof_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Proof bytes for the project's verifier.")
    ] = None,
    round_: RoundOpt = None,
    rpc: RpcOpt = None,
    key: KeyOpt = "POCFL_PRIVATE_KEY",
    keystore: KeystoreOpt = None,
    json_out: JsonOpt = False,
    deployment: DeploymentOpt = None,
    market: MarketOpt = None,
) -> None:
    """Aggregator: post a round's scores and outlier flags; the contract credits the round budget."""
    score_values = parse_scores(scores)
    flags = parse_flags(outliers) if outliers is not None else None
    report = parse_bytes32(report_hash, "--report-hash") if report_hash else ZERO_BYTES32
    hyper = parse_bytes32(hyperparams_hash, "--hyperparams-hash") if hyperparams_hash else ZERO_BYTES32
    proof = read_bytes(proof_file, "--proof-file") if proof_file else b""
    with Session(rpc, key, keystore, json_out, deployment, market) as s:
        m = s.market()
        r = round_ if round_ is not None else m.project(project_id).current_round
        submissions = m.submissions(project_id, r, from_block=s.from_block)
        n = len(submissions)
        if flags is None:
            flags = (False,) * n
        if len(score_values) != n or len(flags) != n:
            raise ConfigError(
                f"round {r} of project {project_id} has {n} submissions but {len(score_values)} scores and "
                f"{len(flags)} outlier flags: give one of each per submission, in submission order "
                f"(see `pocfl round show {project_id} {r}`)"
            )
        round_post = RoundPost(
            model_cid=model_cid,
            submissions=tuple(submissions),
            scores=score_values,
            outliers=flags,
            report_hash=report,
            hyperparams_hash=hyper,
        )
        receipt = m.post_round(project_id, r, round_post, proof)
        posted = receipt.event("RoundPosted").args
        credits = [
            {
                "trainer": str(e.args["trainer"]),
                "score": int(e.args["score"]),
                "outlier": bool(e.args["outlier"]),
                "amount_wei": int(e.args["amount"]),
            }
            for e in receipt.events
            if e.name == "TrainerCredited"
        ]
        finished = any(e.name == "ProjectFinished" for e in receipt.events)
        document = {
            "project_id": project_id,
            "round": r,
            "credited_wei": int(posted["credited"]),
            "unallocated_wei": int(posted["unallocated"]),
            "proven": bool(posted["proven"]),
            "finished": finished,
            "credits": credits,
            "tx": tx_doc(receipt),
        }

        def human() -> None:
            s.out.print(f"Posted round {r} of project {project_id}: credited {eth(int(posted['credited']))} ETH.")
            s.out.table(_credit_table(credits))
            if finished:
                s.out.print("That was the last round: the project is finished.")

        s.out.result(document, human)


def _credit_table(credits: list[dict[str, Any]]) -> Table:
    table = Table("trainer", "score", "outlier", "credited (wei)")
    for c in credits:
        table.add_row(c["trainer"], str(c["score"]), "yes" if c["outlier"] else "no", str(c["amount_wei"]))
    return table


@app.command("fail")
@guarded
def fail(
    project_id: ProjectId,
    round_: RoundOpt = None,
    rpc: RpcOpt = None,
    key: KeyOpt = "POCFL_PRIVATE_KEY",
    keystore: KeystoreOpt = None,
    json_out: JsonOpt = False,
    deployment: DeploymentOpt = None,
    market: MarketOpt = None,
) -> None:
    """Anyone: mark a round failed once its aggregation deadline passed without results."""
    with Session(rpc, key, keystore, json_out, deployment, market) as s:
        m = s.market()
        r = round_ if round_ is not None else m.project(project_id).current_round
        receipt = m.fail_round(project_id, r)
        cancelled = any(e.name == "ProjectCancelled" for e in receipt.events)
        st = m.project(project_id)
        s.out.result(
            {
                "project_id": project_id,
                "round": r,
                "cancelled": cancelled,
                "status": st.status.name.lower(),
                "tx": tx_doc(receipt),
            },
            lambda: s.out.print(
                f"Failed round {r} of project {project_id}"
                + ("; two failures in a row cancelled the project." if cancelled else ".")
            ),
        )


@app.command("show")
@guarded
def show(
    project_id: ProjectId,
    round_number: Annotated[
        int | None, typer.Argument(min=0, metavar="ROUND", help="Default: the current round.", show_default=False)
    ] = None,
    rpc: RpcOpt = None,
    key: KeyOpt = "POCFL_PRIVATE_KEY",
    keystore: KeystoreOpt = None,
    json_out: JsonOpt = False,
    deployment: DeploymentOpt = None,
    market: MarketOpt = None,
) -> None:
    """Show a round: its submissions (CIDs, commitments) and, once posted, scores, outliers and credits."""
    with Session(rpc, key, keystore, json_out, deployment, market) as s:
        m = s.market(signer=False)
        st = m.project(project_id)
        r = round_number if round_number is not None else st.current_round
        if r >= st.params.num_rounds:
            raise ConfigError(f"project {project_id} has rounds 0 to {st.params.num_rounds - 1}, not {r}")
        start = s.from_block
        subs = sorted(
            project_events(m, "UpdateSubmitted", start, projectId=project_id, round=r),
            key=lambda e: int(e.args["index"]),
        )
        posted = project_events(m, "RoundPosted", start, projectId=project_id, round=r)
        failed = project_events(m, "RoundFailed", start, projectId=project_id, round=r)
        # postRound emits one TrainerCredited per submission, in submission order.
        credited = dict(enumerate(project_events(m, "TrainerCredited", start, projectId=project_id, round=r)))
        if posted:
            state = "posted"
        elif failed:
            state = "failed"
        elif r == st.current_round and st.status == ProjectStatus.ACTIVE:
            state = "open"
        else:
            state = "not reached"
        rows: list[dict[str, Any]] = []
        for e in subs:
            row: dict[str, Any] = {
                "index": int(e.args["index"]),
                "trainer": str(e.args["trainer"]),
                "cid": e.args["cid"],
                "commitment": e.args["commitment"],
                "feature_commitment": e.args["featureCommitment"],
            }
            c = credited.get(int(e.args["index"]))
            if c is not None:
                row.update(
                    score=int(c.args["score"]), outlier=bool(c.args["outlier"]), credited_wei=int(c.args["amount"])
                )
            rows.append(row)
        document: dict[str, Any] = {"project_id": project_id, "round": r, "state": state, "submissions": rows}
        if posted:
            a = posted[0].args
            document.update(
                model_cid=a["modelCid"],
                report_hash=a["reportHash"],
                hyperparams_hash=a["hyperparamsHash"],
                credited_wei=int(a["credited"]),
                unallocated_wei=int(a["unallocated"]),
                proven=bool(a["proven"]),
            )
        if failed:
            document["failed_by"] = str(failed[0].args["caller"])

        def human() -> None:
            s.out.print(f"[bold]Project {project_id}, round {r}[/bold]: {state}, {len(rows)} submissions")
            columns = ["#", "trainer", "cid", "commitment"]
            if posted:
                columns += ["score", "outlier", "credited (wei)"]
            table = Table(*columns)
            for row in rows:
                cells = [str(row["index"]), row["trainer"], escape(row["cid"]), short_hex(row["commitment"])]
                if posted:
                    cells += [
                        str(row.get("score", "")),
                        "yes" if row.get("outlier") else "no",
                        str(row.get("credited_wei", 0)),
                    ]
                table.add_row(*cells)
            if rows:
                s.out.table(table)
            if posted:
                s.out.print(
                    f"model {escape(str(document['model_cid']))}; credited {eth(int(document['credited_wei']))} ETH, "
                    f"{document['unallocated_wei']} wei unallocated"
                )
            if failed:
                s.out.print(f"failed by {short(str(document['failed_by']))}: its budget stays in escrow")

        s.out.result(document, human)


def short_hex(value: Any) -> str:
    """``0x1234…cdef`` of bytes or a hex string."""
    text = "0x" + value.hex() if isinstance(value, bytes) else str(value)
    return f"{text[:10]}…{text[-6:]}" if len(text) > 20 else text
