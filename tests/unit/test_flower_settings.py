"""The Flower app's settings: docs/quickstart.md's table is the code's key lists, and the app's defaults use them.

Also the ClientApp's data settings without Flower running: a CSV share spec (``FILE.csv:part=I:of=N``) filled from
a simulated node's placeholders, on a non-digits task (wine: 13 features, 3 classes).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from aggregator import flower_server
from trainer_client import flower_client
from trainer_client.data import DataSpecError, load_private_data

REPO = Path(__file__).resolve().parents[2]
START, END = "<!-- flower-settings:start -->", "<!-- flower-settings:end -->"


def settings_rows() -> list[str]:
    """The table's rows as the code defines them (regenerate the doc table with ``python -m`` on this file)."""
    shared = set(flower_client.SHARED_SETTINGS)
    rows = [
        f"| `{key}` | {'ServerApp, ClientApp' if key in shared else 'ServerApp'} | {text} |"
        for key, text in flower_server.SETTINGS.items()
    ]
    return rows + [f"| `{key}` | ClientApp | {text} |" for key, text in flower_client.SETTINGS.items()]


def doc_rows() -> list[str]:
    text = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    table = text[text.index(START) + len(START) : text.index(END)]
    return table.strip().splitlines()[2:]


def test_quickstart_table_is_the_code_key_list() -> None:
    assert doc_rows() == settings_rows()


def test_shared_settings_are_server_settings_and_lists_are_disjoint() -> None:
    assert set(flower_client.SHARED_SETTINGS) <= set(flower_server.SETTINGS)
    assert not set(flower_client.SETTINGS) & set(flower_server.SETTINGS)


def test_app_defaults_use_only_documented_keys() -> None:
    config = tomllib.loads((REPO / "flower_app" / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    known = set(flower_server.SETTINGS) | set(flower_client.SETTINGS)
    assert set(config) <= known, sorted(set(config) - known)


def test_code_reads_every_documented_key_and_no_other() -> None:
    """Every ``"pocfl-..."`` literal the two modules read is in their lists, and every listed key is read."""
    literals = set()
    for module in (flower_server, flower_client):
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        body = source[source.index("\nfrom ") :]  # skip the module docstring
        literals |= set(re.findall(r'"(pocfl-[a-z-]+)"', body))
    connection = {"pocfl-rpc", "pocfl-market", "pocfl-deployment", "pocfl-ipfs", "pocfl-password-file"}
    connection |= {"pocfl-key-env", "pocfl-keystore"}  # read by pocfl.connection.Connection.from_settings
    known = set(flower_server.SETTINGS) | set(flower_client.SETTINGS)
    assert literals - {"pocfl-address"} <= known
    assert known <= literals | connection


def _wine_csv(path: Path) -> Path:
    from sklearn.datasets import load_wine

    data = load_wine()
    rows = [",".join([*(f"{v:g}" for v in x), str(int(y))]) for x, y in zip(data.data, data.target, strict=True)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_simulated_nodes_read_disjoint_shares_of_one_csv(tmp_path: Path) -> None:
    from flwr.app import Context, RecordDict

    wine = _wine_csv(tmp_path / "wine.csv")
    x_all, y_all = load_private_data(wine)
    run: dict[str, bool | float | int | str] = {"pocfl-data": f"{wine}:part={{partition-id}}:of={{num-partitions}}"}
    shares = []
    for part in range(3):
        node: dict[str, bool | float | int | str] = {"partition-id": part, "num-partitions": 3}
        spec = flower_client.setting(Context(1, part, node, RecordDict(), run), "pocfl-data")
        assert spec == f"{wine}:part={part}:of=3"
        shares.append(load_private_data(spec))
    assert all(x.shape[1] == 13 for x, _ in shares)
    assert sum(y.shape[0] for _, y in shares) == y_all.shape[0] == 178
    rows = np.concatenate([np.column_stack([x, y]) for x, y in shares])
    expected = np.column_stack([x_all, y_all])
    assert np.array_equal(rows[np.lexsort(rows.T[::-1])], expected[np.lexsort(expected.T[::-1])])
    assert set(np.unique(np.concatenate([y for _, y in shares]))) == {0, 1, 2}


@pytest.mark.parametrize(
    "suffix", [":part=3:of=3", ":part=0", ":part=0:of=2:alpha=1", ":part=x:of=2", ":part=0:of=500"]
)
def test_bad_csv_share_specs_are_named_errors(tmp_path: Path, suffix: str) -> None:
    wine = _wine_csv(tmp_path / "wine.csv")
    with pytest.raises(DataSpecError):
        load_private_data(f"{wine}{suffix}")


def test_client_without_data_setting_says_what_to_set() -> None:
    from flwr.app import Context, RecordDict

    from pocfl.errors import ConfigError

    context = Context(1, 1, {"partition-id": 0, "num-partitions": 2}, RecordDict(), {"pocfl-project": 1})
    with pytest.raises(ConfigError, match="pocfl-data"):
        flower_client.client_from_settings(context)


if __name__ == "__main__":  # print the table for docs/quickstart.md
    sys.stdout.write("| key | read by | meaning |\n|---|---|---|\n" + "\n".join(settings_rows()) + "\n")
