"""The decision's settings and seeds for one round, built from its public inputs (:mod:`pocfl.rounds.inputs`).

:func:`round_config` turns the project manifest into the :class:`~aggregator.round.RoundConfig` both the node and
the auditor run :func:`~aggregator.round.decide_round` with; :func:`round_seeds` derives the round's
:class:`~aggregator.round.RoundSeeds` from its on-chain submissions digest.
"""

from __future__ import annotations

from typing import cast, get_args

from aggregator.round import RoundConfig, RoundSeeds
from aggregator.shapley import Method, ScoringConfig
from pocfl.manifest import ManifestError, ProjectManifest
from pocfl.market import Market
from pocfl.rounds.inputs import round_digest


def round_config(manifest: ProjectManifest) -> RoundConfig:
    """The :class:`RoundConfig` a project's manifest fixes (what both the node and the auditor run with).

    Raises
    ------
    ManifestError
        An aggregation setting has a value :func:`decide_round` does not know.
    """
    agg = manifest.aggregation
    if agg.validation_metric not in ("neg_loss", "accuracy"):
        raise ManifestError(f"aggregation.validation_metric {agg.validation_metric!r}: expected neg_loss or accuracy")
    if agg.shapley_method not in get_args(Method):
        raise ManifestError(f"aggregation.shapley_method {agg.shapley_method!r}: expected one of {get_args(Method)}")
    return RoundConfig(
        sketch_dim=agg.sketch_dim,
        metric="accuracy" if agg.validation_metric == "accuracy" else "neg_loss",
        scoring=ScoringConfig(method=cast(Method, agg.shapley_method), max_evaluations=agg.shapley_max_evaluations),
        n_classes=manifest.model.n_classes,
    )


def round_seeds(
    market: Market, project_id: int, round_: int, *, digest: bytes | None = None, from_block: int = 0
) -> RoundSeeds:
    """:meth:`RoundSeeds.derive` of the round, from its final submissions digest (read when not given)."""
    d = digest if digest is not None else round_digest(market, project_id, round_, from_block=from_block)
    return RoundSeeds.derive(market.client.chain.chain_id, market.client.address, project_id, round_, d)
