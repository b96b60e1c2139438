"""Issue 14, part 3: the CLI a web3 user expects, one way to name a project and a round, help that wraps cleanly.

Project ids are positional everywhere (``--project`` stays a hidden alias of train/aggregate/audit), the round is
``--round`` (``round show`` still takes it positionally); ``--version``; ``--rpc-url``/``$ETH_RPC_URL``;
``--password-file``; ``account import|list`` and keystores in the state folder by default.
"""

from __future__ import annotations

import itertools
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
from click.testing import Result
from typer.testing import CliRunner

from pocfl.accounts import import_key, list_keystores
from pocfl.cli.main import app
from pocfl.connection import Connection
from pocfl.procs import free_port

pytestmark = pytest.mark.e2e

KEY = "0x" + "4c" * 32  # a throwaway test key (never funded anywhere)
DEAD_RPC = "http://127.0.0.1:9"  # the discard port: nothing answers JSON-RPC there
# A throwaway chain without the contract: a command that got its project id fails at once, naming the address
# (a dead RPC would not do: train and aggregate wait for a chain that is down to come back).
NO_MARKET = ("--rpc", "embedded", "--market", "0x000000000000000000000000000000000000dEaD")


def run(*args: str, code: int = 0, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env, input=stdin)
    assert result.exit_code == code, f"pocfl {' '.join(args)}: {result.exit_code}\n{result.output}{result.exception!r}"
    assert "Traceback" not in result.output
    return result


def run_json(*args: str, code: int = 0, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return json.loads(run(*args, "--json", code=code, env=env, stdin=stdin).stdout)


# ---------------------------------------------------------------------------------------------------
# --version, project ids, rounds
# ---------------------------------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata() -> None:
    assert run("--version").stdout.strip() == f"pocfl {version('pocfl')}"
    assert run("-V").stdout == run("--version").stdout


@pytest.mark.parametrize("command", ["train", "aggregate", "audit"])
def test_project_id_is_positional_and_project_is_a_hidden_alias(pocfl_home: Path, command: str) -> None:
    extra = ["--data", "digits:part=0:of=3"] if command == "train" else []
    usage = run(command, "--help", env={"COLUMNS": "100"}).stdout
    assert f"{command} [OPTIONS] [ID]" in " ".join(usage.split()) and "--project" not in usage
    # Missing or contradictory: a usage error (exit 2) before anything connects.
    assert "Missing argument 'ID'" in run(command, *extra, "--rpc", DEAD_RPC, code=2).output
    clash = run(command, "3", "--project", "4", *extra, "--rpc", DEAD_RPC, code=2).output
    assert "ID 3 and --project 4 disagree" in clash
    # Either spelling, or both when they agree, reaches the chain (which has no marketplace): the same error.
    for spelling in (["3"], ["--project", "3"], ["3", "--project", "3"]):
        doc = run_json(command, *spelling, *extra, *NO_MARKET, code=1)
        assert doc["error"] == "ConfigError" and "no contract code at 0x" in doc["message"]


def test_round_show_takes_round_as_an_option(pocfl_home: Path) -> None:
    usage = run("round", "show", "--help", env={"COLUMNS": "100"}).stdout
    assert "--round" in usage
    clash = run("round", "show", "1", "2", "--round", "3", "--rpc", DEAD_RPC, code=2).output
    assert "--round 3 and ROUND 2 disagree" in clash
    for spelling in (["--round", "2"], ["2"]):
        doc = run_json("round", "show", "1", *spelling, *NO_MARKET, code=1)
        assert doc["error"] == "ConfigError" and "no contract code at 0x" in doc["message"]


# ---------------------------------------------------------------------------------------------------
# --rpc-url and $ETH_RPC_URL (as Foundry's cast), --password-file
# ---------------------------------------------------------------------------------------------------


def test_rpc_url_alias_and_eth_rpc_url(pocfl_home: Path) -> None:
    def chain_named(*args: str, env: dict[str, str] | None = None) -> str:
        doc = run_json("project", "list", *args, env=env, code=1)
        assert doc["error"] == "ChainUnavailableError"
        found = re.search(r"no chain answers at (\S+)", doc["message"])
        assert found is not None, doc
        return found.group(1)

    assert chain_named("--rpc-url", "http://127.0.0.1:7") == "http://127.0.0.1:7"
    assert chain_named(env={"ETH_RPC_URL": "http://127.0.0.1:8"}) == "http://127.0.0.1:8"
    both = {"ETH_RPC_URL": "http://127.0.0.1:8", "POCFL_RPC": "http://127.0.0.1:9"}
    assert chain_named(env=both) == "http://127.0.0.1:9"  # POCFL_RPC first
    assert chain_named("--rpc", "http://127.0.0.1:7", env=both) == "http://127.0.0.1:7"  # the option over both
    # $POCFL_MARKET names the contract where no deployment file does (a trainer on another machine).
    doc = run_json("project", "list", "--rpc", "embedded", env={"POCFL_MARKET": NO_MARKET[-1]}, code=1)
    assert doc["error"] == "ConfigError" and f"no contract code at {NO_MARKET[-1]}" in doc["message"]


def test_password_file_opens_a_keystore_and_warns_when_others_can_read_it(pocfl_home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("correct horse\nignored second line\n")
    secret.chmod(0o600)
    made = import_key(KEY, None, lambda _path: "correct horse")
    warnings: list[str] = []
    conn = Connection(rpc_setting="embedded", keystore=made.path, password_file=secret, warn=warnings.append)
    assert conn.account().address == made.address and warnings == []
    secret.chmod(0o644)
    conn = Connection(rpc_setting="embedded", keystore=made.path, password_file=secret, warn=warnings.append)
    assert conn.account().address == made.address
    assert len(warnings) == 1 and "readable by others" in warnings[0] and "chmod 600" in warnings[0]
    secret.write_text("wrong\n")
    with pytest.raises(Exception, match="wrong password"):
        Connection(keystore=made.path, password_file=secret, warn=warnings.append).account()
    # From the command line: `account show` signs nothing but opens the account, on a throwaway chain.
    secret.write_text("correct horse\n")
    secret.chmod(0o600)
    shown = run_json(
        "account", "show", "--rpc", "embedded", "--keystore", str(made.path), "--password-file", str(secret)
    )
    assert shown["address"] == made.address


# ---------------------------------------------------------------------------------------------------
# account new|import|list: keystores in the state folder, 0600
# ---------------------------------------------------------------------------------------------------


def test_new_keystore_goes_to_the_state_folder(
    pocfl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POCFL_KEYSTORE_PASSWORD", "pw")
    made = run_json("account", "new")
    path = Path(made["keystore"])
    assert path == pocfl_home / "keystores" / f"{made['address']}.json" and list(tmp_path.glob("*.json")) == []
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    listed = run_json("account", "list")
    assert listed["keystores"] == [{"address": made["address"], "keystore": str(path)}]


def test_import_key_from_stdin_env_or_keystore(pocfl_home: Path, tmp_path: Path) -> None:
    from eth_account import Account

    address = Account.from_key(KEY).address
    secret = tmp_path / "password"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    # The key from stdin: never on the command line, never echoed.
    result = run("account", "import", "--password-file", str(secret), "--json", stdin=KEY + "\n")
    doc = json.loads(result.stdout)
    assert doc["address"] == address and KEY[2:] not in result.output
    path = Path(doc["keystore"])
    assert path.parent == pocfl_home / "keystores" and path.stat().st_mode & 0o777 == 0o600
    assert Account.decrypt(json.loads(path.read_text()), "pw").hex().removeprefix("0x") == KEY[2:]
    # Again: refused, the file kept.
    again = run_json("account", "import", "--password-file", str(secret), stdin=KEY + "\n", code=1)
    assert again["error"] == "ConfigError" and "refusing to overwrite" in again["message"]
    # From an environment variable, to a path of one's own.
    other = tmp_path / "mine.json"
    env = {"MY_TEST_KEY": KEY}
    doc = run_json(
        "account",
        "import",
        "--key-env",
        "MY_TEST_KEY",
        "--keystore",
        str(other),
        "--password-file",
        str(secret),
        env=env,
    )
    assert doc == {"address": address, "keystore": str(other)} and other.stat().st_mode & 0o777 == 0o600
    # Not a key: named, and the text is not repeated.
    bad = run_json("account", "import", "--password-file", str(secret), stdin="0x1234 not a key\n", code=1)
    assert bad["error"] == "ConfigError" and "64 hex digits" in bad["message"] and "0x1234" not in bad["message"]
    # An existing keystore file is copied (same password) into another state folder's keystores.
    other_home = tmp_path / "other-home"
    copied = run_json("account", "import", "--from-keystore", str(other), env={"POCFL_HOME": str(other_home)})
    assert copied["address"] == address and Path(copied["keystore"]).read_bytes() == other.read_bytes()
    assert Path(copied["keystore"]).stat().st_mode & 0o777 == 0o600
    assert [k.address for k in list_keystores(other_home / "keystores")] == [address]
    (tmp_path / "junk.json").write_text('{"not": "a keystore"}')
    junk = run_json("account", "import", "--from-keystore", str(tmp_path / "junk.json"), code=1)
    assert "not an encrypted keystore" in junk["message"]
    # list skips files that are not keystores.
    (pocfl_home / "keystores" / "notes.json").write_text("[]")
    assert [k["address"] for k in run_json("account", "list")["keystores"]] == [address]


# ---------------------------------------------------------------------------------------------------
# Help text at 80 and 100 columns
# ---------------------------------------------------------------------------------------------------


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            if not sub.hidden:
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _description(lines: list[str]) -> list[list[str]]:
    """The paragraphs of the command's description: after the usage and its blank line, before the first panel."""
    body: list[str] = []
    started = False
    for line in lines:
        if line.lstrip().startswith("╭"):
            break
        if started:
            body.append(line.strip())
        elif "Usage:" in line:
            started = True
    paragraphs: list[list[str]] = [[]]
    for line in body:
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("width", [80, 100])
def test_help_fits_the_terminal_and_wraps_cleanly(width: int) -> None:
    assert len(COMMANDS) > 40
    for path, command in COMMANDS:
        text = run(*path, "--help", env={"COLUMNS": str(width)}).stdout
        lines = text.splitlines()
        name = " ".join(("pocfl", *path))
        too_long = [line for line in lines if len(line) > width]
        assert not too_long, f"{name} --help at {width} columns: {too_long}"
        # Every option's name appears whole (not split over two lines, not cut short with an ellipsis).
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in (*param.opts, *param.secondary_opts):
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{name}: {opt} split or cut"
        # The description is wrapped greedily at the width: no line breaks early (a docstring's own line
        # breaks, kept, would leave ragged short lines).
        content = width - 2  # typer pads the description one column on each side
        for paragraph in _description(lines):
            for line, following in itertools.pairwise(paragraph):
                if following.startswith("- "):
                    continue
                assert len(line) + 1 + len(following.split()[0]) > content, (
                    f"{name} --help at {width} columns breaks early:\n{line}\n{following}"
                )


def test_ipfs_up_without_a_daemon_installed_points_to_scripts_install(
    pocfl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the hint said `npm ci --prefix tools/ipfs-node`, which fails offline; scripts/install works."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # neither Kubo's `ipfs` nor `node` for js-ipfs
    monkeypatch.delenv("POCFL_KUBO", raising=False)
    failed = run_json("ipfs", "up", "--port", str(free_port()), code=1)
    assert failed["error"] == "ConfigError" and "no IPFS daemon is installed" in failed["message"]
    assert "scripts/install" in failed["message"] and "npm ci" not in failed["message"]
    assert not (pocfl_home / "ipfs.json").exists()
