"""Payout audit: recompute every posted round of a project from public data and compare with the chain.

``pocfl audit`` calls :func:`audit_project`. It trusts nothing but the chain's events and state and the bytes
their CIDs and hashes name (every read is verified by the content store), and reads the round inputs with the
same functions the aggregator node uses (:mod:`pocfl.rounds.inputs`), so an honest node and an auditor agree bit for
bit. For each round it checks:

1. **Report**: the object named by ``RoundPosted.reportHash`` is fetched by its CID (so its bytes are the ones the
   chain fixed), parses, and describes this round: project, round, chain, market, submissions digest, seeds,
   input and output models, hyper-parameters and their hash; its submission list equals the ``UpdateSubmitted``
   events (trainer, CID, commitment, order) and its scores and flags equal the ``TrainerCredited`` events.
2. **Submissions**: every update is fetched by CID, its commitment checked and decoded again. A sealed
   (encrypted) update is checked through the plaintext the aggregator revealed after the round
   (``plaintext_cid``): its commitment must hold. Without it the submission, and so the round, is
   *unverifiable* (said so, not counted as a mismatch unless ``strict``). Every posted rejection is judged
   again (:mod:`pocfl.audit.rejections`: other stores, trainers' evidence): disproved (a difference naming the
   round and the trainer), confirmed, or *unchecked* (listed in :attr:`AuditResult.unchecked`; a failure under
   ``strict``).
3. **Decision**: :func:`aggregator.round.decide_round` runs again with the seeds derived from the on-chain
   submissions digest (recomputed from the events as the contract does), the same global model,
   hyper-parameters, accuracy history, prior updates and validation set (the manifest's recipe, or a revealed
   file checked against ``validationSetCommitment``). Outlier flags, integer scores and statuses must be equal
   bit for bit; Shapley values, weights, ratios, accuracies and losses equal to float precision; the new model
   re-encoded must have the posted ``modelCid``; the next hyper-parameters must hash to ``hyperparamsHash``.
4. **Money**: :func:`pocfl.payouts.allocate` of the recomputed scores must give the ``TrainerCredited``
   amounts and the ``RoundPosted`` totals; the project's escrow must equal its budget less everything credited
   and withdrawn; for each trainer, credited (all projects) + stakes returned - claimed must equal its
   on-chain ``credits``.
5. **Proofs**: with a verifier the contract only accepts proven posts, so ``RoundPosted.proven`` must be set;
   without one the results are *unproven*, recomputed only.

Every difference is collected (an audit never stops at the first); :meth:`AuditResult.check` raises
:class:`AuditMismatchError` listing them all.

The package: :mod:`~pocfl.audit.history` (one event scan: the project's history), the checkers that each return
their differences (:mod:`~pocfl.audit.reports` 1, :mod:`~pocfl.audit.rejections` 2, :mod:`~pocfl.audit.recompute`
3, :mod:`~pocfl.audit.ledger` 4, :mod:`~pocfl.audit.proofs` 5), :mod:`~pocfl.audit.run` (the orchestration),
:mod:`~pocfl.audit.result` (what an audit finds) and :mod:`~pocfl.audit.report` (the figures and the HTML page).
The trainers' evidence files the rejections are judged with are :mod:`pocfl.rounds.evidence` (core: the trainer
writes them, the audit reads them).
"""

from pocfl.audit.result import (
    AUDIT_FORMAT,
    FLOAT_RTOL,
    MESSAGE_LIMIT,
    VALUE_LIMIT,
    AuditMismatchError,
    AuditResult,
    Difference,
    RoundAudit,
    SubmissionAudit,
    TrainerAudit,
    WrongStoreError,
    short,
)
from pocfl.audit.run import audit_project

__all__ = [
    "AUDIT_FORMAT",
    "FLOAT_RTOL",
    "MESSAGE_LIMIT",
    "VALUE_LIMIT",
    "AuditMismatchError",
    "AuditResult",
    "Difference",
    "RoundAudit",
    "SubmissionAudit",
    "TrainerAudit",
    "WrongStoreError",
    "audit_project",
    "short",
]
