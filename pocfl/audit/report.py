"""Figures and a self-contained HTML page of an :class:`~pocfl.audit.AuditResult`.

:func:`write_audit_report` writes into one folder:

- ``accuracy.png``: validation accuracy of the global model at the start and after each posted round;
- ``contributions.png``: a trainers x rounds heatmap of each trainer's share of the round's credits, with
  outliers and rejected updates marked;
- ``payouts.png``: wei credited to each trainer, stacked by round;
- ``audit.html``: the verdict, every difference, the per-trainer and per-round tables and the figures embedded
  as base64, so the one file can be mailed or archived;
- ``audit.json``: :meth:`AuditResult.to_json`.

Figures use matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so this is safe in
servers and tests.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pocfl.audit.result import AuditResult, RoundAudit, short
from pocfl.errors import ConfigError

WEI_PER_ETH = 10**18


@dataclass(frozen=True)
class AuditFiles:
    """Paths of what :func:`write_audit_report` wrote."""

    out_dir: Path
    html: Path
    json: Path
    figures: tuple[Path, ...]


def eth(wei: int) -> str:
    """Exact ether amount of ``wei`` as a decimal string without trailing zeros."""
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), WEI_PER_ETH)
    return sign + f"{whole}.{frac:018d}".rstrip("0").rstrip(".")


def _ascii_short(address: str) -> str:
    # Plots use ASCII labels only: a missing glyph is a warning, and warnings are errors in the tests.
    return short(address).replace("\u2026", "..")


def _png(fig: object) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _posted(result: AuditResult) -> list[RoundAudit]:
    return [r for r in result.rounds if r.state == "posted"]


def accuracy_figure(result: AuditResult) -> bytes:
    """PNG: validation accuracy of the global model before the first posted round and after each one."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    posted = [r for r in _posted(result) if r.accuracy is not None]
    xs: list[float] = []
    ys: list[float] = []
    ticks: list[float] = []
    names: list[str] = []
    if posted and posted[0].accuracy_before is not None:
        xs.append(posted[0].round - 1)
        ys.append(100 * posted[0].accuracy_before)
        ticks.append(posted[0].round - 1)
        names.append("start")
    for r in posted:
        assert r.accuracy is not None
        xs.append(r.round)
        ys.append(100 * r.accuracy)
    if xs:
        ax.plot(xs, ys, marker="o", color="#1f77b4")
        bad = [r for r in posted if r.verdict == "mismatch"]
        if bad:
            ax.scatter(
                [r.round for r in bad],
                [100 * (r.accuracy or 0.0) for r in bad],
                s=120,
                facecolors="none",
                edgecolors="#d62728",
                label="mismatch",
                zorder=3,
            )
            ax.legend(loc="lower right")
        ax.set_xticks([*ticks, *(r.round for r in posted)], [*names, *(str(r.round) for r in posted)])
    else:
        ax.text(0.5, 0.5, "no recomputed round", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("after round")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Project {result.project_id}: validation accuracy of the global model")
    ax.grid(alpha=0.3)
    return _png(fig)


def contribution_matrix(result: AuditResult) -> tuple[list[str], list[int], list[list[float | None]], list[list[str]]]:
    """Trainers, posted rounds, each trainer's share of each round's credits (%, None: no submission), labels."""
    rounds = _posted(result)
    trainers = [t.trainer for t in result.trainers]
    row = {t.lower(): i for i, t in enumerate(trainers)}
    shares: list[list[float | None]] = [[None] * len(rounds) for _ in trainers]
    labels: list[list[str]] = [[""] * len(rounds) for _ in trainers]
    for j, r in enumerate(rounds):
        for s in r.submissions:
            i = row[s.trainer.lower()]
            share = 100.0 * (s.credited_wei or 0) / r.credited_wei if r.credited_wei else 0.0
            shares[i][j] = share
            if s.report_status == "rejected" or s.status == "rejected":
                labels[i][j] = "rejected"
            elif s.posted_outlier:
                labels[i][j] = "outlier"
            else:
                labels[i][j] = f"{share:.0f}%"
    return trainers, [r.round for r in rounds], shares, labels


def contributions_figure(result: AuditResult) -> bytes:
    """PNG: heatmap of each trainer's share of each posted round's credits (outliers and rejections marked)."""
    import numpy as np
    from matplotlib.figure import Figure

    trainers, rounds, shares, labels = contribution_matrix(result)
    height = max(2.8, 0.45 * len(trainers) + 1.6)
    fig = Figure(figsize=(max(5.0, 1.1 * len(rounds) + 3.5), height), layout="constrained")
    ax = fig.add_subplot()
    if not trainers or not rounds:
        ax.text(0.5, 0.5, "no posted round", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig)
    grid = np.array([[np.nan if v is None else v for v in row] for row in shares], dtype=float)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="Greens", vmin=0.0, vmax=100.0, aspect="auto")
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            value = grid[i, j]
            colour = "white" if not np.isnan(value) and value > 60 else "black"
            ax.text(j, i, text or "-", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(rounds)), [str(r) for r in rounds])
    ax.set_yticks(range(len(trainers)), [_ascii_short(t) for t in trainers])
    ax.set_xlabel("round")
    ax.set_title("Share of each round's credits per trainer")
    fig.colorbar(image, ax=ax, label="% of the round's credited wei")
    return _png(fig)


def payouts_figure(result: AuditResult) -> bytes:
    """PNG: wei credited to each trainer by this project, stacked by round."""
    from matplotlib.figure import Figure

    rounds = _posted(result)
    trainers = [t.trainer for t in result.trainers]
    fig = Figure(figsize=(6.8, max(2.8, 0.45 * len(trainers) + 1.6)), layout="constrained")
    ax = fig.add_subplot()
    if not trainers:
        ax.text(0.5, 0.5, "no trainer credited", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig)
    left = [0.0] * len(trainers)
    row = {t.lower(): i for i, t in enumerate(trainers)}
    for r in rounds:
        amounts = [0.0] * len(trainers)
        for s in r.submissions:
            amounts[row[s.trainer.lower()]] += (s.credited_wei or 0) / WEI_PER_ETH
        ax.barh(range(len(trainers)), amounts, left=left, label=f"round {r.round}")
        left = [a + b for a, b in zip(left, amounts, strict=True)]
    for i, t in enumerate(result.trainers):
        ax.text(left[i], i, f" {t.credited_wei / WEI_PER_ETH:.6g}", va="center", fontsize=8)
    ax.set_yticks(range(len(trainers)), [_ascii_short(t) for t in trainers])
    ax.invert_yaxis()
    ax.set_xlabel("credited (ETH)")
    ax.set_title(f"Project {result.project_id}: payouts per trainer")
    if rounds:
        ax.legend(loc="lower right", fontsize=8)
    ax.margins(x=0.25)
    return _png(fig)


# --- HTML -----------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.8rem;word-break:break-all}
.ok{color:#137333;font-weight:600}.bad{color:#c5221f;font-weight:600}.warn{color:#b06000}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>" for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdict(verdict: str) -> str:
    css = {"verified": "ok", "mismatch": "bad", "unverifiable": "warn", "unchecked": "warn"}.get(verdict, "")
    return f'<span class="{css}">{_e(verdict)}</span>' if css else _e(verdict)


def render_html(result: AuditResult, figures: dict[str, bytes]) -> str:
    """The audit as one self-contained HTML page (figures embedded as base64 PNG)."""
    parts: list[str] = []
    title = f"pocfl audit: project {result.project_id}"
    parts += _summary(result, title)
    parts += _findings(result)
    parts += _trainer_table(result)
    parts += _round_table(result)
    parts += _figures(figures)
    parts += _round_details(result)
    parts.append(
        "<h2>What was checked</h2><p>Every artifact was fetched by its CID and verified by the content store. For "
        "each posted round: the report named by the on-chain reportHash, its submissions against the "
        "UpdateSubmitted events, every update (sealed ones through their revealed plaintext and commitment), "
        "decide_round recomputed with the chain-derived seeds, the new model's CID, the next hyper-parameters' "
        "hash, and the payout rule against the TrainerCredited events; then the escrow and every trainer's "
        "credits, claims and pending balance.</p>"
    )
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _summary(result: AuditResult, title: str) -> list[str]:
    """The title, the verdict and the project's facts."""
    parts: list[str] = []
    if result.ok:
        verdict = '<p class="ok">Every posted round was recomputed or checked: no difference.</p>'
        if result.unchecked:
            verdict = (
                f'<p class="warn">No difference, but {len(result.unchecked)} rejection(s) could be neither confirmed '
                "nor disproved (see below).</p>"
            )
        if result.unverifiable_rounds:
            verdict = (
                f'<p class="warn">No difference, but rounds {result.unverifiable_rounds} could not be recomputed '
                "(see the warnings).</p>"
            )
    else:
        verdict = f'<p class="bad">{len(result.differences)} difference(s) between the chain and the recomputation.</p>'
    parts.append(f"<h1>{_e(title)}</h1>{verdict}")
    facts = [
        ("chain id", str(result.chain_id)),
        ("marketplace", f"<code>{_e(result.market)}</code>"),
        ("status", _e(result.status)),
        ("owner", f"<code>{_e(result.owner)}</code>"),
        ("aggregator", f"<code>{_e(result.aggregator)}</code>"),
        (
            "proofs",
            "rounds proven on chain by verifier <code>" + _e(result.verifier) + "</code>"
            if result.proofs == "verifier"
            else "no verifier: results are unproven, recomputed only",
        ),
        ("budget", f"{eth(result.budget)} ETH ({result.budget} wei) over {result.num_rounds} rounds"),
        ("round budget", f"{result.round_budget} wei"),
        ("escrow left", f"{result.escrow} wei; withdrawn by the owner {result.withdrawn_wei} wei"),
        ("manifest", f"<code>{_e(result.manifest_cid)}</code> ({_e(result.manifest_name)})"),
        ("validation set", _e(result.validation or "unavailable")),
        ("content store", f"<code>{_e(result.store)}</code>"),
    ]
    parts.append(_table(["", ""], [[_e(k), v] for k, v in facts]))
    return parts


def _findings(result: AuditResult) -> list[str]:
    """Every difference, unchecked rejection, evidence finding and warning."""
    sections = (
        ('<h2 class="bad">Differences</h2>', [f"<code>{_e(d.message)}</code>" for d in result.differences]),
        (f'<h2 class="warn">{len(result.unchecked)} rejection(s) unchecked</h2>', [_e(w) for w in result.unchecked]),
        ("<h2>Trainer evidence</h2>", [_e(w) for w in result.evidence]),
        ('<h2 class="warn">Not checked</h2>', [_e(w) for w in result.warnings]),
    )
    return [f"{title}<ul>{''.join(f'<li>{item}</li>' for item in items)}</ul>" for title, items in sections if items]


def _trainer_table(result: AuditResult) -> list[str]:
    """The payouts per trainer."""
    parts: list[str] = []
    parts.append("<h2>Payouts per trainer</h2>")
    parts.append(
        "<p>Credited and recomputed: this project. Claimed and pending: the whole account (one <code>claim</code> "
        "withdraws every project's credits); credited elsewhere counts other projects and returned stakes.</p>"
    )
    parts.append(
        _table(
            [
                "trainer",
                "rounds",
                "total score",
                "outliers",
                "credited (wei)",
                "recomputed (wei)",
                "credited elsewhere (wei)",
                "claimed (wei)",
                "pending (wei)",
            ],
            [
                [
                    f"<code>{_e(t.trainer)}</code>",
                    str(t.rounds),
                    str(t.total_score),
                    str(t.outliers),
                    str(t.credited_wei),
                    (
                        str(t.expected_wei)
                        if t.expected_wei == t.credited_wei
                        else f'<span class="bad">{t.expected_wei}</span>'
                    ),
                    str(t.credited_elsewhere_wei),
                    str(t.claimed_wei),
                    str(t.pending_wei),
                ]
                for t in result.trainers
            ],
            numeric=range(1, 9),
        )
    )
    return parts


def _round_table(result: AuditResult) -> list[str]:
    """One row per round."""
    parts: list[str] = []
    parts.append("<h2>Rounds</h2>")
    parts.append(
        _table(
            [
                "round",
                "state",
                "verdict",
                "proven",
                "submissions",
                "accuracy",
                "credited (wei)",
                "unallocated (wei)",
                "model",
                "report",
            ],
            [
                [
                    str(r.round),
                    _e(r.state),
                    _verdict(r.verdict),
                    "" if r.proven is None else ("yes" if r.proven else "no"),
                    str(len(r.submissions)),
                    "" if r.accuracy is None else f"{100 * r.accuracy:.2f}%",
                    str(r.credited_wei),
                    str(r.unallocated_wei),
                    f"<code>{_e(r.model_cid)}</code>",
                    f"<code>{_e(r.report_cid)}</code>",
                ]
                for r in result.rounds
            ],
            numeric=(0, 4, 5, 6, 7),
        )
    )
    return parts


def _figures(figures: dict[str, bytes]) -> list[str]:
    """The figures, embedded as base64 PNG."""
    parts: list[str] = []
    names = {"accuracy": "Accuracy", "contributions": "Contributions", "payouts": "Payouts"}
    parts.append("<h2>Figures</h2>")
    for key, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="{_e(names.get(key, key))}" src="data:image/png;base64,{data}">')
    return parts


def _round_details(result: AuditResult) -> list[str]:
    """Per round with submissions: its notes and one row per submission."""
    parts: list[str] = []
    for r in result.rounds:
        if not r.submissions:
            continue
        parts.append(f"<h2>Round {r.round}: {_verdict(r.verdict)}</h2>")
        if r.notes:
            parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in r.notes) + "</ul>")
        parts.append(
            _table(
                [
                    "#",
                    "trainer",
                    "update",
                    "read as",
                    "posted score",
                    "recomputed",
                    "posted outlier",
                    "recomputed",
                    "status",
                    "credited (wei)",
                    "recomputed (wei)",
                ],
                [
                    [
                        str(s.index),
                        f"<code>{_e(s.trainer)}</code>",
                        f"<code>{_e(s.cid)}</code>",
                        _e(s.source) + (f"<br><small>{_e(s.note)}</small>" if s.note else ""),
                        _e(s.posted_score),
                        _mark(s.score, s.posted_score),
                        _e(_yes_no(s.posted_outlier)),
                        _mark(_yes_no(s.outlier), _yes_no(s.posted_outlier), s.outlier is None),
                        _mark(s.status, s.report_status, s.status is None) if s.status else _e(s.report_status),
                        _e(s.credited_wei),
                        _mark(s.expected_wei, s.credited_wei, s.score is None),
                    ]
                    for s in r.submissions
                ],
                numeric=(0, 4, 5, 9, 10),
            )
        )
    return parts


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def _mark(value: object, posted: object, missing: bool = False) -> str:
    if value is None or missing:
        return ""
    return _e(value) if value == posted else f'<span class="bad">{_e(value)}</span>'


REPORT_FILES = ("accuracy.png", "contributions.png", "payouts.png", "audit.html", "audit.json")
"""What :func:`write_audit_report` writes."""


def write_audit_report(result: AuditResult, out_dir: Path) -> AuditFiles:
    """Write the figures, the HTML page and the JSON document into ``out_dir``, atomically.

    Everything is written into a fresh folder beside ``out_dir`` first and renamed into place at the end, so a
    failed or interrupted run never leaves a partial report nor destroys an earlier one: the previous report is
    kept as ``<out_dir>.previous``. A folder that holds other files than a report's is never moved: the new files
    then replace the old ones one by one (each rename atomic).

    Raises
    ------
    ConfigError
        The folder cannot be created or written.
    """
    figures = {
        "accuracy": accuracy_figure(result),
        "contributions": contributions_figure(result),
        "payouts": payouts_figure(result),
    }
    page = render_html(result, figures)
    document = json.dumps(result.to_json(), indent=2) + "\n"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
        try:
            for name, png in figures.items():
                (tmp / f"{name}.png").write_bytes(png)
            (tmp / "audit.html").write_text(page, encoding="utf-8")
            (tmp / "audit.json").write_text(document, encoding="utf-8")
            _move_into_place(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write the audit report into {out_dir}: {exc.strerror or exc}") from None
    paths = tuple(out_dir / f"{name}.png" for name in figures)
    return AuditFiles(out_dir=out_dir, html=out_dir / "audit.html", json=out_dir / "audit.json", figures=paths)


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out_dir``, keeping an earlier report as ``<out_dir>.previous``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} is not a folder")
    if out_dir.is_dir() and not {p.name for p in out_dir.iterdir()} <= set(REPORT_FILES):
        for name in REPORT_FILES:  # someone else's folder: replace our files only
            os.replace(tmp / name, out_dir / name)
        return
    previous = out_dir.with_name(out_dir.name + ".previous")
    if out_dir.is_dir():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(out_dir, previous)
    os.replace(tmp, out_dir)
