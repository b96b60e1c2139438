"""The audit report is written atomically: a failed run leaves no trace and destroys nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocfl.audit import AuditResult
from pocfl.audit import report as audit_report
from pocfl.audit.report import REPORT_FILES, write_audit_report
from pocfl.errors import ConfigError

pytestmark = pytest.mark.unit

ADDRESS = "0x" + "12" * 20


def result(project_id: int = 1) -> AuditResult:
    return AuditResult(project_id, 31337, ADDRESS, ADDRESS, ADDRESS, ADDRESS, "active", 0, 0, 0, 0)


def contents(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in folder.iterdir()}


def test_a_failed_render_leaves_the_earlier_report_and_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "audit"
    write_audit_report(result(), out)
    before = contents(out)
    assert set(before) == set(REPORT_FILES)

    def broken(*_args: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit_report, "_move_into_place", broken)  # the disk fills up at the very end
    with pytest.raises(ConfigError, match="No space left"):
        write_audit_report(result(2), out)
    assert contents(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
    monkeypatch.setattr(audit_report, "render_html", broken)  # or while rendering
    with pytest.raises(OSError, match="No space"):
        write_audit_report(result(2), out)
    assert contents(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["audit"]


def test_a_new_report_replaces_the_folder_and_keeps_the_previous_one(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    write_audit_report(result(1), out)
    first = contents(out)
    files = write_audit_report(result(2), out)
    assert files.html == out / "audit.html" and b'"project_id": 2' in files.json.read_bytes()
    assert contents(tmp_path / "audit.previous") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit", "audit.previous"]


def test_a_folder_with_other_files_is_never_moved(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    write_audit_report(result(), out)
    assert (out / "notes.txt").read_text() == "keep me" and set(REPORT_FILES) <= set(contents(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write the audit report"):
        write_audit_report(result(), tmp_path / "file")
