"""The HTML report page: charts drawn as inline SVG with the data in them, nothing fetched from
anywhere, and every string escaped."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import factories_reports as f
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.report_html import Charts, render_report
from deliverability.vocabulary import Outcome, Reason, Standing

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src="https://evil.example/p.png"> & "quoted"'


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text = ""

    def iter(self, tag: str | None = None) -> list[Element]:
        found = [self] if tag in (None, self.tag) else []
        for child in self.children:
            found += child.iter(tag)
        return found

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


class Tree(HTMLParser):
    """A small DOM: enough to find elements, attributes and text."""

    VOID = frozenset({"meta", "img", "br", "link", "input", "hr"})

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.current = self.root
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.text += data

    def by_id(self, ident: str) -> Element:
        [element] = [e for e in self.root.iter() if e.attrs.get("id") == ident]
        return element


def page(rows: list[dict[str, Any]] | None = None, charts: Charts | None = None) -> str:
    return render_report(
        title="Destination domains",
        columns=("domain", "bounce_rate", "last_text"),
        rows=rows or [],
        charts=charts or Charts(),
        generated_at=NOW,
        period="2026-10-03 to 2026-11-02",
    )


DAYS = [
    {"day": "2026-10-30", "delivered": 80, "deferred": 10, "bounced": 6, "blocked": 4},
    {"day": "2026-10-31", "delivered": 40, "deferred": 0, "bounced": 9, "blocked": 0},
]
WORST = [
    {"domain": "worst.example", "bounce_rate": 0.5},
    {"domain": "bad.example", "bounce_rate": 0.25},
]
REASONS = [
    {"reason": Reason.USER_UNKNOWN, "count": 15},
    {"reason": Reason.MAILBOX_FULL, "count": 10},
    {"reason": Reason.BLOCKED, "count": 4},
]


def full_page() -> Tree:
    return Tree(page(charts=Charts(outcomes_by_day=DAYS, worst_domains=WORST, reasons=REASONS)))


def test_the_page_has_the_three_charts_as_inline_svg() -> None:
    tree = full_page()
    ids = [svg.attrs.get("id") for svg in tree.root.iter("svg")]
    assert ids == ["chart-outcomes", "chart-domains", "chart-reasons"]


def test_outcomes_chart_stacks_one_segment_per_outcome_per_day_with_the_counts() -> None:
    chart = full_page().by_id("chart-outcomes")
    bars = [r for r in chart.iter("rect") if "bar" in r.attrs.get("class", "")]
    assert [(b.attrs["data-series"], int(b.attrs["data-value"])) for b in bars] == [
        ("delivered", 80),
        ("deferred", 10),
        ("bounced", 6),
        ("blocked", 4),
        ("delivered", 40),
        ("bounced", 9),
    ]
    # Heights are proportional to counts: the first day's stack (100) fills the whole axis
    # (rounded up to 100), so each segment is its count times the same scale.
    heights = [float(b.attrs["height"]) for b in bars]
    scale = heights[0] / 80
    assert all(
        abs(h - scale * int(b.attrs["data-value"])) < 0.15
        for h, b in zip(heights, bars, strict=True)
    )
    # Segments of one day stack without gaps: each one ends where the next begins.
    first_day = bars[:4]
    for lower, upper in itertools.pairwise(first_day):
        assert (
            abs(float(upper.attrs["y"]) + float(upper.attrs["height"]) - float(lower.attrs["y"]))
            < 0.15
        )
    assert "2026-10-31 bounced: 9" in [b.all_text() for b in bars]


def test_outcomes_chart_draws_expiries_as_their_own_segment_above_the_deferrals() -> None:
    # An expiry is stored with outcome `deferred`, but reports.outcomes_by_day counts it as
    # `expired`: the chart gives it a segment and a legend entry of its own.
    days = [{"day": "2026-10-30", "delivered": 5, "deferred": 3, "expired": 2, "bounced": 1}]
    chart = Tree(page(charts=Charts(outcomes_by_day=days))).by_id("chart-outcomes")
    bars = [r for r in chart.iter("rect") if "bar" in r.attrs.get("class", "")]
    assert [(b.attrs["data-series"], int(b.attrs["data-value"])) for b in bars] == [
        ("delivered", 5),
        ("deferred", 3),
        ("expired", 2),
        ("bounced", 1),
    ]
    assert len({b.attrs["fill"] for b in bars}) == 4
    legend = [t.all_text() for t in chart.iter("text")]
    assert "expired" in legend


def test_worst_destinations_and_reasons_charts_have_a_bar_per_item_longest_for_the_largest() -> (
    None
):
    tree = full_page()
    domains = tree.by_id("chart-domains").iter("rect")
    assert [d.attrs["data-label"] for d in domains] == ["worst.example", "bad.example"]
    assert float(domains[0].attrs["width"]) == 2 * float(domains[1].attrs["width"])
    assert "50.00%" in tree.by_id("chart-domains").all_text()
    reasons = tree.by_id("chart-reasons").iter("rect")
    assert [(r.attrs["data-label"], r.attrs["data-value"]) for r in reasons] == [
        ("user_unknown", "15"),
        ("mailbox_full", "10"),
        ("blocked", "4"),
    ]


def test_an_empty_report_still_renders_with_empty_charts_and_a_header_row() -> None:
    tree = Tree(page())
    for ident in ("chart-outcomes", "chart-domains", "chart-reasons"):
        chart = tree.by_id(ident)
        assert "No data in this period." in chart.all_text()
        assert chart.iter("rect") == []
    assert [th.all_text() for th in tree.by_id("rows").iter("th")] == [
        "domain",
        "bounce_rate",
        "last_text",
    ]
    assert tree.by_id("rows").iter("td") == []


def test_hostile_strings_are_escaped_everywhere() -> None:
    rows = [{"domain": HOSTILE, "bounce_rate": 0.125, "last_text": HOSTILE}]
    charts = Charts(
        outcomes_by_day=[{"day": HOSTILE, "bounced": 1}],
        worst_domains=[{"domain": HOSTILE, "bounce_rate": 1.0}],
        reasons=REASONS,
    )
    text = page(rows=rows, charts=charts)
    tree = Tree(text)
    assert tree.root.iter("script") == []
    assert tree.root.iter("img") == []
    cells = [td.all_text() for td in tree.by_id("rows").iter("td")]
    assert cells == [HOSTILE, "12.50%", HOSTILE]
    assert tree.by_id("chart-domains").iter("rect")[0].attrs["data-label"] == HOSTILE
    assert "<script>" not in text


def test_nothing_on_the_page_loads_from_anywhere() -> None:
    rows = [{"domain": "x.example", "last_text": "see https://support.example/answer/81126"}]
    text = page(rows=rows, charts=Charts(outcomes_by_day=DAYS, worst_domains=WORST))
    tree = Tree(text)
    for element in tree.root.iter():
        for name in ("src", "href", "xlink:href", "data", "action", "poster", "srcset"):
            assert name not in element.attrs, (element.tag, name)
        assert element.tag not in ("script", "link", "iframe", "object", "embed", "img")
    style = "".join(s.all_text() for s in tree.root.iter("style"))
    assert not re.search(r"url\(|@import", style)
    # The content security policy forbids any fetch, should a string ever slip through.
    [csp] = [m for m in tree.root.iter("meta") if m.attrs.get("http-equiv")]
    assert "default-src 'none'" in csp.attrs["content"]


def test_a_page_made_from_the_report_functions_shows_the_store_data(session: Session) -> None:
    gone = f.recipient(
        session, "gone@bad.example", at=NOW, standing=Standing.BOUNCED, reason=Reason.USER_UNKNOWN
    )
    f.events(session, gone, 3, at=datetime(2026, 11, 1, 9, tzinfo=UTC), outcome=Outcome.BOUNCED)
    f.events(session, gone, 1, at=datetime(2026, 11, 1, 9, tzinfo=UTC), outcome=Outcome.DELIVERED)
    since = datetime(2026, 10, 3, tzinfo=UTC)
    charts = Charts(
        outcomes_by_day=reports.outcomes_by_day(session, since=since, until=NOW),
        worst_domains=reports.domains(session, since=since, until=NOW),
        reasons=reports.reasons(session, since=since, until=NOW),
    )
    tree = Tree(
        render_report(
            title="Undeliverable addresses",
            columns=reports.COLUMNS["undeliverable"],
            rows=reports.undeliverable(session),
            charts=charts,
            generated_at=NOW,
        )
    )
    bars = tree.by_id("chart-outcomes").iter("rect")
    assert {
        (b.attrs["data-series"], b.attrs["data-value"]) for b in bars if b.attrs.get("data-series")
    } >= {
        ("bounced", "3"),
        ("delivered", "1"),
    }
    assert tree.by_id("chart-domains").iter("rect")[0].attrs["data-value"] == "0.75"
    assert "gone@bad.example" in tree.by_id("rows").all_text()
