"""One audit as ``pocfl audit`` runs it: gather the evidence and stores, audit the project, write the report.

:func:`pocfl.audit.audit_project` does the audit itself; this module adds what an auditor's run needs around it:
evidence files loaded (and refused) before anything is read, extra content stores opened and closed, the report
files written, and the differences as an :class:`~pocfl.audit.AuditMismatchError` for the caller to raise or show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pocfl.audit import AuditMismatchError, AuditResult
    from pocfl.audit.report import AuditFiles
    from pocfl.connection import Connection

Status = Callable[[str], AbstractContextManager[Callable[[str], None] | None]]
"""Shows the audit while it runs (the CLI's spinner): called with a description, it yields a function that takes
progress lines (or None to drop them)."""


@dataclass(frozen=True)
class AuditRun:
    """An audit and where its report went; ``mismatch`` lists the differences (None when everything matched)."""

    result: AuditResult
    files: AuditFiles
    mismatch: AuditMismatchError | None


def default_audit_dir(project_id: int) -> Path:
    """Where a project's report goes by default: ``<state dir>/audit/project-<id>/``."""
    from pocfl.deployment import state_dir

    return state_dir() / "audit" / f"project-{project_id}"


def run_audit(
    conn: Connection,
    project_id: int,
    *,
    out_dir: Path | None = None,
    validation: Path | None = None,
    strict: bool = False,
    evidence: Sequence[Path] = (),
    extra_stores: Sequence[str] = (),
    status: Status = lambda _text: nullcontext(),
) -> AuditRun:
    """Audit a project from public data and write the report (figures, ``audit.html``, ``audit.json``).

    Parameters
    ----------
    conn
        The chain and the content store to read (no signing account needed).
    project_id
        The project.
    out_dir
        Where the report goes (default :func:`default_audit_dir`).
    validation
        The owner's revealed validation set, for projects without a public recipe.
    strict
        Fail on rounds that cannot be recomputed and on rejections that cannot be checked.
    evidence
        Trainers' evidence files (pocfl-evidence/1 JSON); a bad one fails before anything is read.
    extra_stores
        Other content stores (specs, as for ``--ipfs``) to look for rejected updates the main store lacks.
    status
        Shows the audit while it runs.
    """
    from pocfl.audit import AuditMismatchError, audit_project
    from pocfl.audit.report import write_audit_report
    from pocfl.rounds.evidence import load_evidence
    from pocfl.store import open_store

    target = out_dir if out_dir is not None else default_audit_dir(project_id)
    proofs = [load_evidence(path) for path in evidence]  # a bad file is the auditor's to fix: fail first
    sm = conn.store_market(signer=False)
    extra = [open_store(spec) for spec in extra_stores]
    try:
        with status(f"auditing project {project_id}") as update:
            result = audit_project(
                sm,
                project_id,
                validation_file=validation,
                from_block=conn.from_block,
                strict=strict,
                progress=update,
                extra_stores=extra,
                evidence=proofs,
            )
    finally:
        for store in extra:
            store.close()
    files = write_audit_report(result, target)
    mismatch = AuditMismatchError(project_id, result.differences, result) if result.differences else None
    return AuditRun(result, files, mismatch)
