"""Compile ``contracts/`` with the pinned npm solcjs and write the committed artifacts.

Run from a checkout (Node and ``npm ci`` needed, nothing else)::

    python -m pocfl.contracts.build          # rewrite artifacts and generated error classes
    python -m pocfl.contracts.build --check  # fail when the committed files differ (CI)

Compiler version and settings come from ``contracts/compiler.json``, the file Hardhat reads too.
Compilation is deterministic, so ``--check`` compares bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pocfl.errors import PocflError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
ERRORS_MODULE = Path(__file__).resolve().parents[1] / "chain" / "contract_errors.py"
SOLC_FRONTEND = REPO_ROOT / "scripts" / "solc-stdjson.js"
MAIN_CONTRACT = "PocMarketplace"


class BuildError(PocflError, RuntimeError):
    """The compiler failed, reported errors, or is not the pinned version."""


def compiler_config() -> dict[str, Any]:
    """Return ``contracts/compiler.json`` (version and solc settings)."""
    config: dict[str, Any] = json.loads((CONTRACTS_DIR / "compiler.json").read_text())
    return config


def _sources() -> dict[str, dict[str, str]]:
    files = sorted(CONTRACTS_DIR.rglob("*.sol"))
    return {f.relative_to(REPO_ROOT).as_posix(): {"content": f.read_text()} for f in files}


def _run_node(args: list[str], stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            ["node", str(SOLC_FRONTEND), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO_ROOT,
        )
    except FileNotFoundError as exc:  # pragma: no cover - depends on the machine
        raise BuildError("node is not installed; the contract build needs Node.js 20 and `npm ci`") from exc
    if proc.returncode != 0:
        raise BuildError(f"solcjs failed (did you run `npm ci`?):\n{proc.stderr.strip()}")
    return proc.stdout


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile every source and return one artifact dict per contract, keyed by contract name."""
    config = compiler_config()
    long_version = _run_node(["--version"]).strip()
    if not long_version.startswith(config["version"] + "+"):
        raise BuildError(f"solcjs {long_version} is installed but contracts/compiler.json pins {config['version']}")
    sources = _sources()
    settings = dict(config["settings"])
    settings["outputSelection"] = {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "devdoc", "userdoc"]}
    }
    std_in = {"language": "Solidity", "sources": sources, "settings": settings}
    out = json.loads(_run_node([], stdin=json.dumps(std_in)))
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    warnings = [e for e in out.get("errors", []) if e.get("severity") != "error"]
    if errors or warnings:
        # Warnings are errors too: a clean build is part of the contract's review.
        msgs = "\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors + warnings)
        raise BuildError(f"compiler reported problems:\n{msgs}")

    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(out["contracts"].items()):
        for name, data in sorted(contracts.items()):
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "testOnly": source_name.startswith("contracts/test/"),
                "compiler": {"version": long_version, "settings": config["settings"]},
                "sourceSha256": hashlib.sha256(sources[source_name]["content"].encode()).hexdigest(),
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "devdoc": data.get("devdoc", {}),
                "userdoc": data.get("userdoc", {}),
            }
    return artifacts


def compile_source(source_name: str, content: str, contract: str) -> dict[str, Any]:
    """Compile one generated source (e.g. ezkl's Halo2 verifier) with the pinned solcjs and settings.

    Warnings are tolerated here (the source is generated, not ours); errors raise :class:`BuildError`.
    Returns ``{"abi", "bytecode", "deployedBytecode"}`` of ``contract``.
    """
    config = compiler_config()
    settings = dict(config["settings"])
    settings["outputSelection"] = {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}}
    std_in = {"language": "Solidity", "sources": {source_name: {"content": content}}, "settings": settings}
    out = json.loads(_run_node([], stdin=json.dumps(std_in)))
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("compiler reported errors:\n" + "\n".join(e.get("formattedMessage", "") for e in errors))
    try:
        data = out["contracts"][source_name][contract]
    except KeyError as exc:
        raise BuildError(f"{source_name} has no contract {contract}") from exc
    return {
        "abi": data["abi"],
        "bytecode": "0x" + data["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
    }


def render_errors_module(abi: list[dict[str, Any]], docs: dict[str, Any]) -> str:
    """Generate the Python exception classes for the contract's custom errors.

    Each class states only the error's Solidity parameter list; :class:`~pocfl.chain.revert_base.ContractRevert`
    derives the signature and the argument names from it.
    """
    lines = [
        '"""Named exceptions for every custom error of ``PocMarketplace``.',
        "",
        "GENERATED by ``python -m pocfl.contracts.build`` from the contract ABI; do not edit.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from pocfl.chain.revert_base import ContractRevert",
    ]
    names: list[str] = []
    error_docs = docs.get("errors", {})
    for item in sorted((i for i in abi if i["type"] == "error"), key=lambda i: i["name"]):
        name = item["name"]
        names.append(name)
        inputs = item["inputs"]
        sig = f"{name}({','.join(i['type'] for i in inputs)})"
        notice = ""
        for entry in error_docs.get(sig, []):
            notice = entry.get("notice", "")
        params = ", ".join(f"{i['type']} {i['name']}" for i in inputs)
        lines += [
            "",
            "",
            f"class {name}(ContractRevert):",
            f'    """{notice or name}"""',
            "",
            f'    params = "{params}"',
        ]
    lines += [
        "",
        "",
        "ALL_ERRORS: tuple[type[ContractRevert], ...] = (",
        *[f"    {n}," for n in names],
        ")",
        "",
        "__all__ = [",
        '    "ALL_ERRORS",',
        *[f'    "{n}",' for n in names],
        "]",
        "",
    ]
    return "\n".join(lines)


def expected_files() -> dict[Path, str]:
    """Every generated file and its exact content."""
    artifacts = compile_contracts()
    files = {
        ARTIFACTS_DIR / f"{name}.json": json.dumps(a, indent=2, sort_keys=True) + "\n" for name, a in artifacts.items()
    }
    main = artifacts[MAIN_CONTRACT]
    files[ERRORS_MODULE] = render_errors_module(main["abi"], main["userdoc"])
    return files


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if committed artifacts differ from a fresh build")
    args = parser.parse_args(argv)
    files = expected_files()
    stale = [p for p in sorted(ARTIFACTS_DIR.glob("*.json")) if p not in files]
    if args.check:
        diffs = [p for p, text in files.items() if not p.exists() or p.read_text() != text] + stale
        if diffs:
            for p in diffs:
                print(f"out of date: {p.relative_to(REPO_ROOT)}", file=sys.stderr)
            print("run `python -m pocfl.contracts.build` and commit the result", file=sys.stderr)
            return 1
        print(f"artifacts up to date ({len(files)} files)")
        return 0
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for p in stale:
        p.unlink()
    for p, text in files.items():
        p.write_text(text)
    print(f"wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
