"""The trainer's local journal of its submissions (a round journalled as submitted is never submitted again)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pocfl.fsutil import PRIVATE, write_json_atomic
from trainer_client.results import TrainerError

JOURNAL_FORMAT = "pocfl-trainer-journal/1"


class Journal:
    """The trainer's local record of its submissions: ``state_dir/trainer-<address>-<project>.json``.

    Entries are kept per deployment (``<chain id>:<market address>``) and round; each write replaces the file
    atomically. A round with a ``submitted`` entry is never submitted again, whatever the chain says.
    """

    def __init__(self, state_dir: Path | None, trainer: str, project_id: int, deployment: str) -> None:
        self.path = None if state_dir is None else Path(state_dir) / f"trainer-{trainer.lower()}-{project_id}.json"
        self.trainer = trainer
        self.project_id = project_id
        self.deployment = deployment

    def _load(self) -> dict[str, Any]:
        if self.path is None or not self.path.is_file():
            return {"format": JOURNAL_FORMAT, "trainer": self.trainer, "project_id": self.project_id, "deployments": {}}
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainerError(f"journal {self.path} is unreadable ({exc}): fix or move it away") from exc
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise TrainerError(f"journal {self.path} is not a {JOURNAL_FORMAT} file: fix or move it away")
        return data

    def entry(self, round_: int) -> dict[str, Any] | None:
        """The journal's entry for ``round_`` in this deployment, if any."""
        rounds = self._load()["deployments"].get(self.deployment, {})
        found = rounds.get(str(round_))
        return dict(found) if isinstance(found, dict) else None

    def record(self, round_: int, entry: Mapping[str, Any]) -> None:
        """Write (replace) the entry of ``round_``."""
        if self.path is None:
            return
        data = self._load()
        data["deployments"].setdefault(self.deployment, {})[str(round_)] = dict(entry)
        write_json_atomic(self.path, data, mode=PRIVATE, sort_keys=True)


def journal_entry(
    status: str, cid: str, commitment: bytes, tx_hash: str | None, block: int | None, *, encrypted: bool | None = None
) -> dict[str, Any]:
    """A journal entry: the round's submission ``status`` (``pending`` or ``submitted``) and where it is."""
    return {
        "status": status,
        "cid": cid,
        "commitment": "0x" + commitment.hex(),
        "tx_hash": tx_hash,
        "block": block,
        "encrypted": encrypted,
        "at": int(time.time()),
    }
