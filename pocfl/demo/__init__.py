"""The demos behind ``pocfl demo``: one engine, two scenarios.

:mod:`pocfl.demo.engine` runs a project's whole life on a chain with real files in a content store and reconciles
it to the wei (:mod:`pocfl.demo.reconcile`); a scenario decides the rounds: :mod:`pocfl.demo.fl` (``pocfl demo``:
real training, attackers, free riders, Shapley scores) or :mod:`pocfl.demo.scripted` (``pocfl demo --scripted``:
fixed scores, rounding dust, negative scores, a failed round). Results and their ``--json`` documents are in
:mod:`pocfl.demo.result`.
"""

from __future__ import annotations

from pocfl.demo.config import (
    DEFAULT_ATTACKS,
    DEFAULT_ROUNDS,
    DEFAULT_TRAINERS,
    MODEL_SPEC,
    REPORT_FORMAT,
    ROUND_BUDGET,
    STAKE,
    FlDemoConfig,
    group_of,
)
from pocfl.demo.engine import DemoReporter, Scenario, run_scenario
from pocfl.demo.fl import run_fl_demo
from pocfl.demo.instrument import Stopwatch
from pocfl.demo.result import (
    CreditRow,
    DemoResult,
    FlDemoResult,
    FlEntry,
    FlRound,
    PartyBalance,
    ProjectResult,
    RoundOutcome,
    StoredUpdate,
    TrainerInfo,
)
from pocfl.demo.scripted import RoundScript, initial_model, run_demo, script, trainer_update

__all__ = [
    "DEFAULT_ATTACKS",
    "DEFAULT_ROUNDS",
    "DEFAULT_TRAINERS",
    "MODEL_SPEC",
    "REPORT_FORMAT",
    "ROUND_BUDGET",
    "STAKE",
    "CreditRow",
    "DemoReporter",
    "DemoResult",
    "FlDemoConfig",
    "FlDemoResult",
    "FlEntry",
    "FlRound",
    "PartyBalance",
    "ProjectResult",
    "RoundOutcome",
    "RoundScript",
    "Scenario",
    "Stopwatch",
    "StoredUpdate",
    "TrainerInfo",
    "group_of",
    "initial_model",
    "run_demo",
    "run_fl_demo",
    "run_scenario",
    "script",
    "trainer_update",
]
