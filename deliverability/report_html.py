"""One self-contained HTML report: a table of rows and inline SVG charts drawn here.

The page fetches nothing (no scripts, fonts, images or style sheets from anywhere), so it can be
mailed or archived and still open the same way. Every string that reaches the page goes through
`html.escape`: reply texts and addresses come from remote servers and are hostile input.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deliverability.output import plain
from deliverability.vocabulary import DeliveryState, Outcome

__all__ = ["OUTCOME_COLOURS", "Charts", "bar_chart", "render_report", "stacked_bar_chart"]

#: One colour per outcome, stacked bottom to top in this order (colour-blind-safe palette).
#: `expired` is an expiry, which `reports.outcomes_by_day` counts apart from the deferrals it is
#: stored among.
OUTCOME_COLOURS: dict[str, str] = {
    Outcome.DELIVERED.value: "#1b9e77",
    Outcome.DEFERRED.value: "#e6ab02",
    DeliveryState.EXPIRED.value: "#a6761d",
    Outcome.BOUNCED.value: "#d95f02",
    Outcome.BLOCKED.value: "#7570b3",
    Outcome.COMPLAINED.value: "#e7298a",
}
_BAR_COLOUR = "#b2182b"
_REASON_COLOUR = "#4a6fa5"
_WIDTH = 760
_FONT = 12


def _e(value: object) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _empty_chart(chart_id: str, title: str, height: int = 80) -> str:
    return (
        f'<svg id="{_e(chart_id)}" class="chart empty" role="img" width="{_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_WIDTH} {height}"><title>{_e(title)}</title>'
        f'<text x="10" y="{height // 2}" font-size="{_FONT}">No data in this period.</text></svg>'
    )


def stacked_bar_chart(
    chart_id: str,
    title: str,
    days: Sequence[Mapping[str, Any]],
    series: Mapping[str, str] = OUTCOME_COLOURS,
) -> str:
    """Vertical stacked bars, one per day (`day` key), one segment per series key (counts)."""
    if not days:
        return _empty_chart(chart_id, title)
    height, left, right, top, bottom = 300, 56, 10, 30, 50
    plot_w, plot_h = _WIDTH - left - right, height - top - bottom
    totals = [sum(int(d.get(k, 0)) for k in series) for d in days]
    y_max = _nice_max(max(totals))
    slot = plot_w / len(days)
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg id="{_e(chart_id)}" class="chart" role="img" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}"><title>{_e(title)}</title>'
    ]
    # Horizontal grid lines and y labels at 0, 1/4, ..., max.
    for i in range(5):
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{_WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="{_FONT}">'
            f"{_e(_number(value))}</text>"
        )
    label_every = max(1, math.ceil(len(days) / 12))
    for i, day in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for key, colour in series.items():
            count = int(day.get(key, 0))
            if count <= 0:
                continue
            h = plot_h * count / y_max
            y -= h
            parts.append(
                f'<rect class="bar" data-series="{_e(key)}" data-value="{count}" '
                f'x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{_e(day['day'])} {_e(key)}: {count}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'font-size="{_FONT - 2}">{_e(str(day["day"])[5:])}</text>'
            )
    # Legend along the bottom.
    x = left
    for key, colour in series.items():
        parts.append(
            f'<rect class="legend" x="{x}" y="{height - 18}" width="12" height="12" '
            f'fill="{colour}"/><text x="{x + 16}" y="{height - 8}" font-size="{_FONT}">'
            f"{_e(key)}</text>"
        )
        x += 24 + 8 * len(key)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    colour: str = _BAR_COLOUR,
    percent: bool = False,
) -> str:
    """Horizontal bars, one per (label, value), largest first as given; `percent` shows values
    (fractions) as percentages."""
    if not items:
        return _empty_chart(chart_id, title)
    row_h, top, label_w, value_w = 22, 10, 220, 70
    height = top * 2 + row_h * len(items)
    plot_w = _WIDTH - label_w - value_w
    v_max = max(value for _, value in items) or 1.0
    parts = [
        f'<svg id="{_e(chart_id)}" class="chart" role="img" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}"><title>{_e(title)}</title>'
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = plot_w * value / v_max if value > 0 else 0.0
        shown = f"{value * 100:.2f}%" if percent else _number(value)
        short = label if len(label) <= 32 else label[:31] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="{_FONT}">'
            f"{_e(short)}</text>"
            f'<rect class="bar" data-label="{_e(label)}" data-value="{value:g}" x="{label_w}" '
            f'y="{y + 3}" width="{max(w, 1.0):.1f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{_e(label)}: {_e(shown)}</title></rect>"
            f'<text x="{label_w + max(w, 1.0) + 4:.1f}" y="{y + 15}" font-size="{_FONT}">'
            f"{_e(shown)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Charts:
    """The data behind the three charts (see `reports.outcomes_by_day`, `reports.domains`,
    `reports.reasons`)."""

    outcomes_by_day: Sequence[Mapping[str, Any]] = ()
    worst_domains: Sequence[Mapping[str, Any]] = ()
    reasons: Sequence[Mapping[str, Any]] = ()


def _is_fraction(column: str) -> bool:
    """Columns holding a fraction shown as a percentage (`max_rate` is messages per minute)."""
    return column in ("rate", "review_at", "pause_at") or (
        column.endswith("_rate") and column != "max_rate"
    )


def _cell(column: str, value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, float) and _is_fraction(column):
        return f"{value * 100:.2f}%"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px}.verdict{font-size:16px;font-weight:600;padding:10px 12px;
border-radius:4px;background:#eef6ee;border-left:6px solid #1b9e77;margin:16px 0}
.verdict.review{background:#fff6e0;border-color:#e6ab02}.verdict.pause{background:#fdecea;
border-color:#d95f02}.verdict.insufficient{background:#f0f0f0;border-color:#999}
table{border-collapse:collapse;font-size:12px;margin-top:8px}th,td{border:1px solid #ddd;
padding:3px 6px;text-align:left;vertical-align:top;max-width:420px;overflow-wrap:anywhere}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}svg.chart{display:block}
"""


def render_report(
    *,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    charts: Charts,
    generated_at: datetime,
    period: str = "",
    verdict: str | None = None,
    verdict_level: str = "",
) -> str:
    """The whole page as one string: header, optional verdict, three charts, the rows."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Belt and braces: even if a string escaped our escaping, the browser may load nothing.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(period)} &middot; generated {_e(generated_at.isoformat())} '
        f"&middot; {len(rows)} row(s)</p>",
    ]
    if verdict:
        out.append(f'<p class="verdict {_e(verdict_level)}">{_e(verdict)}</p>')
    worst = [
        (str(d["domain"]), float(d["bounce_rate"]))
        for d in charts.worst_domains
        if d.get("bounce_rate") is not None
    ]
    reasons = [(str(plain(r["reason"])), float(r["count"])) for r in charts.reasons]
    out += [
        "<h2>Outcomes per day</h2>",
        stacked_bar_chart("chart-outcomes", "Outcomes per day (UTC)", charts.outcomes_by_day),
        "<h2>Worst destinations (bounce rate)</h2>",
        bar_chart("chart-domains", "Bounce rate by destination domain", worst, percent=True),
        "<h2>Failure reasons</h2>",
        bar_chart("chart-reasons", "Failures by reason", reasons, colour=_REASON_COLOUR),
        f"<h2>{_e(title)}: rows</h2>",
        '<table id="rows"><thead><tr>',
        "".join(f"<th>{_e(c)}</th>" for c in columns),
        "</tr></thead><tbody>",
    ]
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td>{_e(_cell(c, row.get(c)))}</td>" for c in columns) + "</tr>"
        )
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"
