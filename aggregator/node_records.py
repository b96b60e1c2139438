"""What the aggregator node returns and records: a round's :class:`RoundOutcome` and its :class:`Journal`.

The journal, ``<state_dir>/project-<id>.json``, records each round's stage (see :mod:`aggregator.node`)::

    {"format": "pocfl-aggregator-journal/1", "chain_id": 31337, "market": "0x..", "project_id": 1,
     "rounds": {"0": {"stage": "posted", "model_cid": "bafk..", "report_cid": "bafk..", ...}}}
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pocfl.errors import ConfigError
from pocfl.fsutil import PRIVATE, write_json_atomic
from pocfl.rounds.inputs import PostedRound
from pocfl.rounds.report import RoundReport

JOURNAL_FORMAT = "pocfl-aggregator-journal/1"
STAGES = ("decided", "stored", "posted")
POST_FIELDS = ("model_cid", "tx_hash", "block", "credited")
"""What an outcome copies from the :class:`PostedRound` it reports, under the same names."""


def hex0x(data: bytes) -> str:
    """``data`` as ``0x``-prefixed hex."""
    return "0x" + data.hex()


@dataclass(frozen=True)
class RoundOutcome:
    """What :meth:`AggregatorNode.run_round` did for a round.

    Attributes
    ----------
    project_id, round
        Which round.
    status
        ``posted`` (this call posted it), ``already_posted`` (found posted on chain, by this node earlier or by a
        previous run), ``failed`` (the round was failed on chain) or ``missed`` (its aggregation window closed
        unposted).
    report
        The round report (None for ``failed`` and ``missed``).
    report_cid, model_cid
        Where the report and the new global model are stored.
    tx_hash, block
        The ``postRound`` transaction.
    credited
        Wei credited to trainers (None when unknown).
    resumed
        The post finished work journalled by an earlier run (the report was read back, not recomputed).
    """

    project_id: int
    round: int
    status: str
    report: RoundReport | None = None
    report_cid: str | None = None
    model_cid: str | None = None
    tx_hash: str | None = None
    block: int | None = None
    credited: int | None = None
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the report in full)."""
        doc = {k: v for k, v in asdict(self).items() if k != "report"}
        doc["report"] = json.loads(self.report.to_json()) if self.report is not None else None
        return doc

    @classmethod
    def of_post(
        cls,
        project_id: int,
        posted: PostedRound,
        report: RoundReport,
        report_cid: str,
        *,
        status: str,
        resumed: bool = False,
    ) -> RoundOutcome:
        """The outcome of a posted round: ``posted`` by this call or ``already_posted`` before it."""
        where = {name: getattr(posted, name) for name in POST_FIELDS}
        return cls(project_id, posted.round, status, report=report, report_cid=report_cid, resumed=resumed, **where)


class Journal:
    """The node's per-project progress file (see the module docstring for its format).

    Parameters
    ----------
    path
        The JSON file; created on first write (atomically: temporary file, fsync, rename).
    chain_id, market, project_id
        Whose rounds it records; a file recorded for another chain or contract is refused.

    Raises
    ------
    ConfigError
        The file is unreadable or belongs to another deployment or project.
    """

    def __init__(self, path: Path, chain_id: int, market: str, project_id: int) -> None:
        self.path = path
        self.header = {"format": JOURNAL_FORMAT, "chain_id": chain_id, "market": market, "project_id": project_id}
        self.rounds: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"aggregator journal {path} is unreadable ({exc}): move it away to start over"
                ) from exc
            mine = {k: raw.get(k) if isinstance(raw, dict) else None for k in self.header}
            if mine != self.header or not isinstance(raw.get("rounds"), dict):
                raise ConfigError(
                    f"aggregator journal {path} belongs to {mine}, not to {self.header}: use another --state-dir"
                )
            self.rounds = raw["rounds"]

    def get(self, round_: int) -> dict[str, Any]:
        """The round's entry (empty when nothing was recorded)."""
        return dict(self.rounds.get(str(round_), {}))

    def record(self, round_: int, stage: str, **fields: Any) -> None:
        """Move a round to ``stage``, merging ``fields`` into its entry, and write the file."""
        assert stage in STAGES, stage
        entry = self.rounds.setdefault(str(round_), {})
        entry.update(fields, stage=stage, updated_at=int(time.time()))
        # A unique temporary file, removed on failure (a fixed name was left behind and raced between nodes).
        write_json_atomic(self.path, {**self.header, "rounds": self.rounds}, mode=PRIVATE, sort_keys=True)

    def record_posted(self, posted: PostedRound, report_cid: str, **fields: Any) -> None:
        """Move a round to ``posted``, recording where its post and report are (plus ``fields``)."""
        self.record(
            posted.round,
            "posted",
            model_cid=posted.model_cid,
            report_cid=report_cid,
            report_hash=hex0x(posted.report_hash),
            tx_hash=posted.tx_hash,
            block=posted.block,
            credited=posted.credited,
            **fields,
        )
