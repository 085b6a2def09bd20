"""Render a loop's typed results and ledger into a :class:`vvuq_twin.report.Report`.

No summary row is written by hand: each row and table comes from a step's
:class:`~vvuq_twin.loop.status.StepResult`. Provisional figures carry a PROVISIONAL mark in
every table cell and a warning paragraph above their section. Figures come from the shared
builders in :mod:`vvuq_twin.loop.figures`.
"""

from __future__ import annotations

from typing import Any

from .status import PROVISIONAL, StepResult, jsonable

__all__ = ["render_report", "flatten_values"]


def flatten_values(values: dict[str, Any], prefix: str = "", *, max_list: int = 12) -> list[tuple[str, Any]]:
    """(name, value) rows of a nested figures dict (long lists and point arrays left out)."""
    rows: list[tuple[str, Any]] = []
    for k, v in values.items():
        name = f"{prefix}{k}"
        if k == "points":
            continue
        if isinstance(v, dict):
            rows += flatten_values(v, f"{name}.", max_list=max_list)
        elif isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            for i, e in enumerate(v[:max_list]):
                rows += flatten_values(e, f"{name}[{i}].", max_list=max_list)
        elif isinstance(v, list) and len(v) > max_list:
            rows.append((name, f"{len(v)} values"))
        else:
            rows.append((name, v))
    return rows


def _cell(v: Any, provisional: bool) -> str:
    if isinstance(v, float):
        s = f"{v:.4g}"
    elif isinstance(v, list):
        s = ", ".join(f"{e:.4g}" if isinstance(e, float) else str(e) for e in v)
    else:
        s = str(v)
    if provisional and isinstance(v, (int, float, list)) and not isinstance(v, bool):
        s = f"{s} ({PROVISIONAL})"
    return s


def _table(r: StepResult) -> list[dict[str, str]]:
    vals = jsonable(r.values)
    return [{"figure": k, "value": _cell(v, r.is_provisional)} for k, v in flatten_values(vals)]


def _status_line(r: StepResult) -> str:
    s = f"{r.status.value}"
    if r.is_provisional:
        s += f" ({PROVISIONAL})"
    if r.reported_only and r.kind not in ("decision", "design"):
        s += " - reported only"
    return s


def render_report(result: Any, *, title: str | None = None, prose: dict[str, str] | None = None) -> Any:
    """Build the report of a :class:`~vvuq_twin.loop.LoopResult`."""
    from ..report import Metric, Report
    from . import figures

    prose = dict(prose or {})
    rep = Report(title or f"VVUQ loop: {result.name}", seed=int(result.meta["seed"]),
                 subtitle=f"declaration {result.meta['declaration_hash'][:12]}, overall {result.status.value}")
    by_kind: dict[str, list[StepResult]] = {}
    for r in result.results.values():
        by_kind.setdefault(r.kind, []).append(r)

    def lines(kind: str) -> list[str]:
        return [f"{r.step}: {_status_line(r)} - {r.reason}" for r in by_kind.get(kind, [])]

    summary: dict[str, Any] = {
        "verification": lines("verification") or ["no verification step"],
        "sensitivity": lines("sensitivity") or ["no sensitivity step"],
        "decision": lines("decision") or ["no decision step"],
        "next_measurement": lines("design") or ["no design step"],
        "assumptions": [f"loop gates: on_fail={result.meta['on_fail']!r}"]
        + ([f"{PROVISIONAL} steps: {', '.join(result.provisional_steps)}"] if result.provisional_steps else []),
    }
    diag = []
    for r in by_kind.get("calibration", []):
        for name, c in r.values.get("checks", {}).items():
            th = c.get("threshold")
            if isinstance(th, (int, float)) and not isinstance(th, bool):
                cmp = ">=" if ("ess" in name or "bfmi" in name) else "<="
                diag.append(Metric(f"{r.step}: {name}", float(c["value"]), float(th), cmp))
    if diag:
        summary["diagnostics"] = diag
    val = []
    for r in by_kind.get("validation", []):
        for key in ("coverage", "median_bias"):
            c = r.values.get(key)
            if c:
                note = c.get("status", "") + (f" ({PROVISIONAL})" if r.is_provisional else "")
                val.append(Metric(f"{r.step}: {key}", float(c["value"]), tuple(c["band"]), "within", note=note))
    if val:
        summary["validation"] = val
    risk = []
    for r in by_kind.get("decision", []):
        for k in ("p_exceed", "superquantile"):
            if k in r.values:
                risk.append(f"{r.step}: {k} = {_cell(r.values[k], r.is_provisional)}")
    if risk:
        summary["risk"] = risk
    rep.add_summary(**summary)

    for r in result.results.values():
        sec = f"{r.step} ({r.kind})"
        if r.is_provisional:
            rep.add_text(sec, f"{PROVISIONAL}: every figure of this step derives from a failed or "
                              "uninformative gate: " + "; ".join(r.provisional))
        rep.add_text(sec, f"Status: {_status_line(r)}. {r.reason}")
        if r.step in prose:
            rep.add_text(sec, prose[r.step])
        rep.add_table(sec, _table(r), caption=f"Figures of step {r.step}")
        if r.kind == "validation" and "points" in r.values:
            rep.add_figure(sec, figures.predictive_band_figure(r.values["points"], level=r.values.get("level", 0.9),
                                                               provisional=r.is_provisional),
                           caption=f"{r.step}: hold-out observations against the central "
                                   f"{r.values.get('level', 0.9):.0%} predictive intervals and medians; "
                                   "points outside their interval are marked.")
        if r.kind == "sensitivity" and r.values.get("ranking"):
            rep.add_figure(sec, figures.index_bar_figure(r.values["ranking"], provisional=r.is_provisional),
                           caption=f"{r.step}: moment-independent delta of {r.values.get('qoi')} for each "
                                   "parameter, with its bootstrap interval.")
    rep.add_table("Ledger", [{"kind": e.kind, "name": e.name,
                              "passed": "" if e.passed is None else str(e.passed),
                              "provisional": str(bool(e.result.get("provisional")))}
                             for e in result.ledger.entries], caption="Ledger entries of this run")
    return rep
