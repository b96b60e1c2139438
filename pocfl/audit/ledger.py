"""The money checks of the audit: budget, the credits each round posted, the escrow and every trainer's ledger.

- :func:`check_budget`: ``ProjectCreated`` escrowed the project's budget, and the round budget is its share;
- :func:`check_posted_credits`: the ``TrainerCredited`` amounts and the ``RoundPosted`` totals are the payout
  rule (:func:`pocfl.payouts.allocate`) of the posted scores;
- :func:`check_escrow`: the escrow is the budget less everything credited and withdrawn;
- :func:`trainer_ledgers`: for each trainer, credited (all projects) + stakes returned - claimed equals its
  on-chain ``credits``.
"""

from __future__ import annotations

from web3 import Web3

from pocfl.audit.history import ACCOUNT_EVENTS, ProjectHistory
from pocfl.audit.result import Difference, Findings, RoundAudit, TrainerAudit
from pocfl.payouts import allocate


def check_budget(history: ProjectHistory) -> list[Difference]:
    """One ``ProjectCreated`` escrowed the budget; the round budget is ``budget // numRounds``."""
    out = Findings(history.project_id)
    created, state = history.created, history.state
    if len(created) != 1:
        out.diff(None, "events", f"expected one ProjectCreated event, found {len(created)}")
        return out.differences
    args = created[0].args
    if int(args["budget"]) != state.budget:
        out.diff(
            None,
            "budget",
            f"ProjectCreated escrowed {args['budget']} wei, the project's budget is {state.budget} wei",
            posted=int(args["budget"]),
            recomputed=state.budget,
        )
    if state.round_budget != state.budget // max(state.params.num_rounds, 1):
        out.diff(
            None,
            "round_budget",
            f"round budget {state.round_budget} wei, budget // numRounds = "
            f"{state.budget // max(state.params.num_rounds, 1)} wei",
        )
    return out.differences


def check_posted_credits(history: ProjectHistory, r: int, audit: RoundAudit) -> list[Difference]:
    """Fill the posted scores, flags and credits into ``audit``'s submissions and check them against the rule."""
    out = Findings(history.project_id)
    state, subs, credited = history.state, history.rounds[r].submissions, history.rounds[r].credited
    if len(credited) != len(subs):
        out.diff(r, "credit", f"{len(credited)} TrainerCredited events for {len(subs)} submissions")
    for s, e in zip(audit.submissions, credited, strict=False):
        s.posted_score = int(e.args["score"])
        s.posted_outlier = bool(e.args["outlier"])
        s.credited_wei = int(e.args["amount"])
        if str(e.args["trainer"]).lower() != s.trainer.lower():
            out.at(r, s).diff(
                "credit", f"TrainerCredited #{s.index} names {e.args['trainer']}, the submission is {s.trainer}"
            )
    scores = [s.posted_score or 0 for s in audit.submissions]
    flags = [bool(s.posted_outlier) for s in audit.submissions]
    alloc = allocate(state.round_budget, scores, flags)
    for s, share in zip(audit.submissions, alloc.shares, strict=True):
        if s.credited_wei is not None and s.credited_wei != share:
            out.at(r, s).diff(
                "credit",
                f"credited {s.credited_wei} wei for posted score {s.posted_score}, the payout rule gives {share}",
                posted=s.credited_wei,
                recomputed=share,
            )
    if (audit.credited_wei, audit.unallocated_wei) != (alloc.credited, alloc.unallocated):
        out.diff(
            r,
            "credit",
            f"RoundPosted credited {audit.credited_wei} and left {audit.unallocated_wei} wei; the payout rule "
            f"credits {alloc.credited} and leaves {alloc.unallocated}",
        )
    return out.differences


def check_escrow(history: ProjectHistory, rounds: list[RoundAudit]) -> list[Difference]:
    """The project's escrow equals its budget less everything credited and withdrawn."""
    out = Findings(history.project_id)
    state, withdrawn = history.state, history.withdrawn_wei
    credited = sum(r.credited_wei for r in rounds)
    expected = state.budget - credited - withdrawn
    if state.escrow != expected:
        out.diff(
            None,
            "escrow",
            f"escrow on chain {state.escrow} wei; budget {state.budget} - credited {credited} - withdrawn "
            f"{withdrawn} = {expected} wei",
            posted=state.escrow,
            recomputed=expected,
        )
    return out.differences


def trainer_ledgers(history: ProjectHistory, rounds: list[RoundAudit]) -> tuple[list[TrainerAudit], list[Difference]]:
    """Every trainer of ``rounds``: its payouts, and a difference where its on-chain ``credits`` disagree."""
    out = Findings(history.project_id)
    trainers: dict[str, TrainerAudit] = {}
    for ra in rounds:
        for s in ra.submissions:
            checksummed = str(Web3.to_checksum_address(s.trainer))
            t = trainers.setdefault(checksummed, TrainerAudit(checksummed))
            t.rounds += 1
            t.total_score += s.posted_score or 0
            t.outliers += int(bool(s.posted_outlier))
            t.credited_wei += s.credited_wei or 0
            t.expected_wei += s.expected_wei if s.expected_wei is not None else (s.credited_wei or 0)
    # Credits are per account across projects: one scan of each event type, from the marketplace's start.
    credited_all: dict[str, int] = {}
    refunds: dict[str, int] = {}
    claimed: dict[str, int] = {}
    sums_of = {"TrainerCredited": credited_all, "TrainerLeft": refunds, "StakeReleased": refunds, "Claimed": claimed}
    for name, key, amount in ACCOUNT_EVENTS:
        sums = sums_of[name]
        for e in history.account_events[name]:
            who = str(Web3.to_checksum_address(str(e.args[key])))
            if who in trainers:
                sums[who] = sums.get(who, 0) + int(e.args[amount])
    for address, t in trainers.items():
        total, back = credited_all.get(address, 0), refunds.get(address, 0)
        t.credited_elsewhere_wei = total - t.credited_wei + back
        t.claimed_wei = claimed.get(address, 0)
        t.pending_wei = history.client.credits(address)
        if total + back - t.claimed_wei != t.pending_wei:
            out.diff(
                None,
                "ledger",
                f"trainer {address}: credited {total} + stakes returned {back} - claimed {t.claimed_wei} = "
                f"{total + back - t.claimed_wei} wei, but its on-chain credits are {t.pending_wei} wei",
                trainer=address,
                posted=t.pending_wei,
                recomputed=total + back - t.claimed_wei,
            )
    return sorted(trainers.values(), key=lambda t: (-t.credited_wei, t.trainer)), out.differences
