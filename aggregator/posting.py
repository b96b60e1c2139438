"""Storing and posting a prepared round, idempotently: the chain is asked first, so a restart never double-posts.

:meth:`RoundPoster.store_and_post` stores the revealed plaintexts, the model and the report (journal: ``stored``),
asks the chain whether the round was settled meanwhile, then posts it (journal: ``posted``).
:meth:`RoundPoster.settled` reports a round the chain already settled; :meth:`RoundPoster.fail_overdue` fails a
round whose aggregation window closed unposted.
"""

from __future__ import annotations

from aggregator.node_context import NodeContext
from aggregator.node_records import RoundOutcome
from aggregator.preparing import PreparedRound
from pocfl.chain.types import ProjectState, ProjectStatus
from pocfl.errors import ChainError
from pocfl.rounds.hyperparams import HyperParams
from pocfl.rounds.inputs import PostedRound, failed_rounds, posted_report
from pocfl.waiting import DeadlineTooCloseError, hhmmss


class RoundPoster:
    """Stores, posts and settles a project's rounds (see the module docstring).

    Parameters
    ----------
    ctx
        The node's shared context.
    """

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def settled(self, r: int, state: ProjectState) -> RoundOutcome | None:
        """The outcome of a round the chain already settled (posted or failed); None if it is still open."""
        ctx = self.ctx
        if r == state.current_round and state.status == ProjectStatus.ACTIVE:
            return None
        posted = ctx.posted(r)
        if posted is not None:
            return self.already_posted(posted)
        if r in failed_rounds(ctx.market, ctx.project_id, from_block=ctx.from_block):
            return RoundOutcome(ctx.project_id, r, "failed")
        return None

    def already_posted(self, posted: PostedRound) -> RoundOutcome:
        """The outcome of a round found posted on chain (journalled as posted if the journal did not say so)."""
        ctx = self.ctx
        report_cid, report = posted_report(ctx.market, posted)
        entry = ctx.journal.get(posted.round)
        if entry.get("stage") != "posted" or entry.get("tx_hash") != posted.tx_hash:
            ctx.journal.record_posted(posted, report_cid, submissions=len(report.submissions))
        return RoundOutcome.of_post(ctx.project_id, posted, report, report_cid, status="already_posted")

    def store_and_post(self, r: int, prepared: PreparedRound, resumed: bool) -> RoundOutcome:
        """Store the round's objects, then post it unless the chain settled it meanwhile."""
        ctx, market = self.ctx, self.ctx.market
        ctx.say(f"round {r}: storing model, report and revealed updates")
        for plaintext in prepared.reveals:
            market.publish(plaintext)
        model_cid = market.publish(prepared.model_bytes)
        report_cid = market.publish(prepared.report_bytes)
        ctx.journal.record(r, "stored", model_cid=model_cid, report_cid=report_cid)
        # Ask the chain first: a run that crashed after its transaction was mined must not post again.
        done = self.settled(r, ctx.state())
        if done is not None:
            return done
        ctx.say(f"round {r}: posting")
        return self.post(r, prepared, report_cid, resumed)

    def post(self, r: int, prepared: PreparedRound, report_cid: str, resumed: bool) -> RoundOutcome:
        """Post a prepared round (see :meth:`aggregator.node.AggregatorNode.run_round`)."""
        ctx, report = self.ctx, prepared.report
        hyper = HyperParams.from_json(report.next_hyperparams)
        gas = None
        if prepared.proof_blob:
            from zk.onchain import POST_GAS  # explicit gas: eth-tester's estimate re-runs the pairing check

            gas = POST_GAS
        try:
            _, receipt = ctx.market.post_round(
                ctx.project_id,
                r,
                model=prepared.model_bytes,
                report=prepared.report_bytes,
                submissions=[u.submission for u in prepared.updates],
                scores=[s.score for s in report.submissions],
                outliers=[s.outlier for s in report.submissions],
                hyperparams_hash=hyper.hash(),
                proof=prepared.proof_blob,
                gas=gas,
            )
        except DeadlineTooCloseError as exc:  # nothing sent: the aggregation window closes too soon
            ctx.say(f"round {r}: {exc}")
            return RoundOutcome(ctx.project_id, r, "missed")
        except ChainError:
            posted = ctx.posted(r)  # mined after all (a lost connection), or posted by another run meanwhile
            if posted is not None:
                return self.already_posted(posted)
            if ctx.clock() >= ctx.state().aggregation_deadline:
                return RoundOutcome(ctx.project_id, r, "missed")  # the window closed while the node worked
            raise
        mined = PostedRound.from_event(receipt.event("RoundPosted"))  # what the chain recorded, as a later run reads it
        ctx.journal.record_posted(mined, report_cid)
        ctx.say(f"round {r}: posted", 1, 1)
        return RoundOutcome.of_post(ctx.project_id, mined, report, report_cid, status="posted", resumed=resumed)

    def fail_overdue(self, r: int) -> RoundOutcome:
        """Fail round ``r`` once its aggregation window closed by the chain's clock (a call before would revert)."""
        ctx = self.ctx
        while True:
            state = ctx.state()
            if state.status != ProjectStatus.ACTIVE or state.current_round != r:
                return self.settled(r, state) or RoundOutcome(ctx.project_id, r, "failed")
            now = ctx.clock()
            if now >= state.aggregation_deadline:
                ctx.client.fail_round(ctx.project_id, r)
                return RoundOutcome(ctx.project_id, r, "failed")
            ctx.say(
                f"round {r}: missed; failing it when its aggregation window closes at "
                f"{hhmmss(state.aggregation_deadline)}"
            )
            ctx.wait(state.aggregation_deadline, now)
