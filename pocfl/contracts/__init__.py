"""Compiled contract artifacts shipped with the package (no Node needed at run time).

The JSON files under ``artifacts/`` are produced by ``python -m pocfl.contracts.build`` from
``contracts/`` with the compiler pinned in ``contracts/compiler.json``; CI rebuilds and diffs them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

MARKETPLACE = "PocMarketplace"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """Return the artifact (abi, bytecode, compiler settings) of contract ``name``.

    Raises
    ------
    FileNotFoundError
        If no such contract was compiled.
    """
    path = resources.files(__package__).joinpath("artifacts", f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"no compiled artifact for contract {name!r}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def marketplace_abi() -> list[dict[str, Any]]:
    """ABI of the marketplace contract."""
    abi: list[dict[str, Any]] = load_artifact(MARKETPLACE)["abi"]
    return abi
