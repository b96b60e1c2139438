#!/usr/bin/env python3
"""The pocfl Flower app (``flower_app/``) on Flower's *simulation* runtime, against anvil and a real IPFS daemon.

Same project setup as ``scripts/run_multiprocess.py`` (anvil, IPFS, fresh keys, ``pocfl deploy``, ``pocfl project
manifest`` + ``create --manifest``, ``pocfl register``; afterwards ``pocfl claim``, ``project withdraw``, ``pocfl
audit`` and the reconciled summary), but the rounds run in Flower's simulation engine: one
``flower-superlink --insecure --simulation`` process on a free 127.0.0.1 port (the same command ``flwr run`` starts
for a ``:local:`` connection, but started here so that its PID is known and it is stopped by PID), then
``flwr run flower_app local-deploy --federation-config "num-supernodes=N" --stream``. Flower simulates the N
SuperNodes inside that process tree; each simulated ClientApp picks its key variable and data share through the
placeholders of ``flower_app/pyproject.toml`` (``POCFL_KEY_TRAINER{partition-id}``,
``digits:part={partition-id}:of={num-partitions}``), so the trainers' keys are in the SuperLink's environment: a
simulation is one machine, one process tree.

``--data FILE.csv`` runs a task of your own instead of the digits demo: the project's manifest is built from a
held-out 20% of the file (``pocfl project manifest --validation``, i.e. :func:`pocfl.fl_project.build_manifest`),
and ``flwr run`` gets ``--run-config 'pocfl-data="<work>/data/train.csv:part={partition-id}:of={num-partitions}"'``
so each simulated ClientApp reads its share of the rest. The model is always the one the on-chain manifest names.

The simulation runtime needs Ray (``pip install "flwr[simulation]==1.42.*"``). Without it this script says so and
exits 3 before starting anything.

Example::

    .venv/bin/python scripts/run_simulation.py --trainers 3 --rounds 2
    .venv/bin/python scripts/run_simulation.py --trainers 2 --rounds 1 --data wine.csv
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_multiprocess import Run, main

NO_RAY = 3


class SimulationRun(Run):
    """A :class:`run_multiprocess.Run` whose rounds run in Flower's simulation engine."""

    def simulation(self) -> dict[str, Any]:
        """Simulation SuperLink with every key in its environment, then ``flwr run``."""
        keys = {a.key_env: a.key_hex for a in self.actors.values() if a.name != "owner"}
        with self.phase("flower-start"):
            env = {**self.env(None, **self.flwr_env("superlink")), **keys}
            link = self.start_superlink("superlink", ["--simulation", "--isolation", "subprocess"], env)
        with self.phase("rounds"):
            self.start_training()
            self.flwr_run(["--federation-config", f"num-supernodes={self.o.trainers}"], [link])
        return {}


def has_ray() -> bool:
    """Whether Ray (Flower's simulation backend) is importable."""
    return importlib.util.find_spec("ray") is not None


def run(argv: Sequence[str] | None = None) -> int:
    """Check for Ray, then run (see the module docstring)."""
    if not has_ray():
        print(
            "error: Flower's simulation runtime needs Ray, which is not installed in this environment "
            f"({sys.executable}).\n"
            '  Install it with `pip install "flwr[simulation]==1.42.*"` (adds ray 2.55.1, about 220 MB), or use the '
            "deployment runtime, which needs no Ray:\n"
            "  scripts/run_multiprocess.py --engine flower",
            file=sys.stderr,
        )
        return NO_RAY
    return main(
        argv,
        run_class=SimulationRun,
        engines=("simulation",),
        prog="run_simulation.py",
        description="Run the pocfl Flower app on Flower's simulation runtime against anvil + IPFS.",
    )


if __name__ == "__main__":
    sys.exit(run())
