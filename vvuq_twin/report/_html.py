"""HTML rendering of a :class:`~vvuq_twin.report.Report` (no external resources)."""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from html import escape
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from .model import SUMMARY_FIELDS, Metric

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report

__all__ = ["render", "STATUS_ID", "GENERATED_ID", "SUMMARY_ID"]

STATUS_ID = "vvuq-status"
GENERATED_ID = "vvuq-generated"
SUMMARY_ID = "vvuq-summary"

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5rem;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.subtitle{color:#555;margin-top:0}.meta{color:#777;font-size:.85rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.summary>tbody>tr>th{width:12rem;background:#eef3f8}
.pass{color:#0a6b2d;font-weight:600}.fail{color:#b00020;font-weight:600}
.na{color:#777}.missing{color:#999;font-style:italic}
code{font-size:.8rem;word-break:break-all}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#333;font-size:.9rem}
nav ul{columns:2}dl{margin:.2rem 0}dt{font-weight:600}dd{margin:0 0 .3rem 1rem}
"""

# Registered first so that it sees errors of anything that follows.
_HEAD_SCRIPT = """
window.__vvuqErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && t.tagName) { window.__vvuqErrors.push('failed to load ' + t.tagName); }
  else { window.__vvuqErrors.push(String(e.message || 'script error')); }
}, true);
(function () {
  var orig = console.error;
  console.error = function () {
    window.__vvuqErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return orig.apply(console, arguments);
  };
})();
"""

_TAIL_SCRIPT = """
(function () {
  function check() {
    var imgs = document.images, broken = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) { broken++; }
    }
    var el = document.getElementById('%(sid)s');
    var errs = window.__vvuqErrors || [];
    el.setAttribute('data-images', String(imgs.length));
    el.setAttribute('data-broken', String(broken));
    el.setAttribute('data-errors', String(errs.length));
    el.setAttribute('data-status', (broken === 0 && errs.length === 0) ? 'ok' : 'error');
    el.textContent = 'Page check: ' + imgs.length + ' figure(s), ' + broken + ' not loaded, ' +
      errs.length + ' error(s).';
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f"{f:.4g}" if math.isfinite(f) else str(f)
    return str(v)


def _badge(passed: bool | None) -> str:
    if passed is None:
        return '<span class="na">n/a</span>'
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def _metrics_table(metrics: list[Any]) -> str:
    rows = []
    for m in metrics:
        th = m.threshold
        if th is None:
            th_s = "—"
        elif m.comparison == "within":
            th_s = f"within [{_fmt(th[0])}, {_fmt(th[1])}]"
        else:
            th_s = f"{m.comparison} {_fmt(th)}"
        val = _fmt(m.value) + (f" {m.unit}" if m.unit else "")
        note = f"<br><span class=\"na\">{escape(m.note)}</span>" if m.note else ""
        rows.append(
            f"<tr><td>{escape(m.name)}{note}</td><td>{escape(val)}</td><td>{escape(th_s)}</td>"
            f"<td>{_badge(m.passed)}</td></tr>"
        )
    return (
        '<table class="metrics"><thead><tr><th>metric</th><th>value</th><th>threshold</th>'
        "<th>status</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _value(v: Any, key: str | None = None) -> str:
    if v is None:
        return '<span class="missing">not provided</span>'
    if isinstance(v, Metric):
        return _metrics_table([v])
    if isinstance(v, str):
        return escape(v).replace("\n", "<br>")
    if isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_)):
        return escape(_fmt(v))
    if hasattr(v, "to_dict") and callable(v.to_dict) and not isinstance(v, (pd.DataFrame,)):
        return _value(v.to_dict(), key)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _value(dataclasses.asdict(v), key)
    if isinstance(v, Mapping):
        items = list(v.items())
        if key == "sensitivity" and items and all(isinstance(x, (int, float, np.integer, np.floating)) for _, x in items):
            items.sort(key=lambda kv: (-abs(float(kv[1])), str(kv[0])))
            lis = "".join(f"<li>{escape(str(k))}: {escape(_fmt(x))}</li>" for k, x in items)
            return f"<ol>{lis}</ol>"
        scalar = all(isinstance(x, (str, int, float, np.integer, np.floating, bool, np.bool_)) or x is None
                     for _, x in items)
        if scalar and key == "versions":
            return "; ".join(f"{escape(str(k))} {escape(_fmt(x))}" for k, x in items)
        if scalar and items and not any(k == "sha256" for k, _ in items):
            trs = "".join(f"<tr><td>{escape(str(k))}</td><td>{_value(x, str(k))}</td></tr>" for k, x in items)
            return f'<table class="kv"><tbody>{trs}</tbody></table>'
        parts = []
        for k, x in items:
            if k == "sha256" and isinstance(x, str):
                inner = f"<code>{escape(x)}</code>"
            else:
                inner = _value(x, str(k))
            parts.append(f"<dt>{escape(str(k))}</dt><dd>{inner}</dd>")
        return "<dl>" + "".join(parts) + "</dl>"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, Metric) for x in v):
            return _metrics_table(list(v))
        if all(isinstance(x, str) for x in v):
            return "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in v) + "</ul>"
        return "<ul>" + "".join(f"<li>{_value(x, key)}</li>" for x in v) + "</ul>"
    if isinstance(v, np.ndarray):
        return _value(v.tolist(), key)
    return escape(str(v))


def _overall(v: Any) -> str:
    ms = [v] if isinstance(v, Metric) else [x for x in v if isinstance(x, Metric)] if isinstance(v, (list, tuple)) else []
    res = [m.passed for m in ms if m.passed is not None]
    if not res:
        return ""
    return " " + _badge(all(res))


def _slug(name: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "section"
    slug, k = f"sec-{base}", 2
    while slug in used:
        slug, k = f"sec-{base}-{k}", k + 1
    used.add(slug)
    return slug


def _table_html(df: pd.DataFrame, float_format: str, caption: str) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)) and math.isfinite(float(v)):
                s = float_format.format(float(v))
            else:
                s = _fmt(v)
            cells.append(f"<td>{escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(report: "Report", generated_utc: str) -> str:
    """Render ``report`` as a self-contained HTML document."""
    summary = dict(report.summary)
    summary["software"] = report._software()
    rows = []
    for key, label in SUMMARY_FIELDS.items():
        v = summary.get(key)
        rows.append(
            f'<tr id="summary-{key}"><th scope="row">{escape(label)}{_overall(v) if v is not None else ""}'
            f"</th><td>{_value(v, key)}</td></tr>"
        )
    used: set[str] = set()
    slugs = {name: _slug(name, used) for name in report.sections}
    nav = "".join(f'<li><a href="#{slugs[n]}">{escape(n)}</a></li>' for n in report.sections)
    secs = []
    fig_no = 0
    for name, items in report.sections.items():
        parts = [f'<section id="{slugs[name]}"><h2>{escape(name)}</h2>']
        for it in items:
            if it.kind == "table":
                df, ff = it.payload
                parts.append(_table_html(df, ff, it.caption))
            elif it.kind == "figure":
                fig_no += 1
                b64 = base64.b64encode(it.payload).decode("ascii")
                parts.append(
                    f'<figure id="figure-{fig_no}"><img src="data:image/png;base64,{b64}" '
                    f'alt="{escape(it.caption, quote=True)}"><figcaption>Figure {fig_no}. '
                    f"{escape(it.caption)}</figcaption></figure>"
                )
            else:
                paras = [p.strip() for p in it.payload.split("\n\n") if p.strip()]
                parts.extend(f"<p>{escape(p)}</p>" for p in paras)
        parts.append("</section>")
        secs.append("".join(parts))
    seed = "none" if report.seed is None else str(int(report.seed))
    subtitle = f'<p class="subtitle">{escape(report.subtitle)}</p>' if report.subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(report.title)}</title><style>{_CSS}</style>"
        f"<script>{_HEAD_SCRIPT}</script></head><body>"
        f"<header><h1>{escape(report.title)}</h1>{subtitle}"
        f'<p class="meta">Seed {escape(seed)}.</p>'
        f'<p class="meta" id="{GENERATED_ID}">Generated {escape(generated_utc)}</p></header>'
        f'<h2 id="sec-summary">VVUQ summary</h2>'
        f'<table class="summary" id="{SUMMARY_ID}"><tbody>{"".join(rows)}</tbody></table>'
        + (f"<nav><h2>Contents</h2><ul>{nav}</ul></nav>" if nav else "")
        + "".join(secs)
        + f'<footer><p class="meta" id="{STATUS_ID}" data-status="pending">Page check pending.</p></footer>'
        + f"<script>{_TAIL_SCRIPT % {'sid': STATUS_ID}}</script>"
        + "</body></html>\n"
    )
