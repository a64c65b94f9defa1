"""Policy as data: classification rules, backoff, throttling and list-hygiene numbers.

The shipped `data/default_policy.toml` holds every number with its source; a user file overrides
or extends it. This module holds the typed, immutable form the rest of the code reads.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from deliverability.addresses import normalize_domain
from deliverability.errors import AddressError, ConfigError, PolicyError, Problem
from deliverability.replies import StatusCode
from deliverability.vocabulary import Fault, Outcome, Reason


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """When to try a deferred delivery again (RFC 5321 section 4.5.4.1)."""

    #: RFC 5321 4.5.4.1: "the retry interval SHOULD be at least 30 minutes".
    first_retry: timedelta = timedelta(minutes=30)
    multiplier: float = 2.0
    max_interval: timedelta = timedelta(hours=4)
    #: +/- this fraction of the interval, deterministic per delivery (see states.py).
    jitter: float = 0.1
    #: RFC 5321 4.5.4.1: "the give-up time generally needs to be at least 4-5 days".
    lifetime: timedelta = timedelta(days=5)
    #: Greylisting daemons (postgrey's default delay is 300 s) accept a retry after a few minutes.
    greylist_retry: timedelta = timedelta(minutes=5)
    #: A "try again in N seconds" hint is honoured, but never past this.
    max_hint: timedelta = timedelta(hours=4)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How a destination that pushes back (421, 452, rate-limit texts) is slowed down."""

    initial_pause: timedelta = timedelta(minutes=15)
    pause_multiplier: float = 2.0
    max_pause: timedelta = timedelta(hours=4)
    #: A repeat inside this window doubles the pause; after it, the next push-back starts afresh.
    repeat_window: timedelta = timedelta(hours=4)
    #: Suggested maximum rate (messages per minute) when first throttled; halves on each repeat.
    initial_rate: float = 60.0
    rate_multiplier: float = 0.5
    min_rate: float = 1.0
    #: The throttle lifts after this many consecutive deliveries to the destination.
    release_after_deliveries: int = 20
    #: Blocks from one destination: this many within the window throttle it too.
    blocked_count: int = 10
    blocked_window: timedelta = timedelta(hours=1)
    #: Provider groups: name -> domains and MX host suffixes that share one throttle.
    provider_domains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    provider_mx_suffixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The sender's own relays (a Postfix `relayhost`, a smarthost): host names matched on whole
    #: labels, like `mx_suffixes`. A `relay=` naming one of them names the relay, not the
    #: recipient's MX, so it neither teaches nor ends a domain's provider group.
    relay_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HygienePolicy:
    """When an address is suppressed; see DESIGN.md "List hygiene defaults"."""

    #: Bare or ambiguous 550/553: this many distinct messages within the window suppress.
    ambiguous_count: int = 2
    ambiguous_window: timedelta = timedelta(days=30)
    #: Soft strikes (mailbox full, expired retries): this many on distinct days, spanning at
    #: least `soft_span`, with no delivery between, within `soft_window`.
    soft_strikes: int = 3
    soft_span: timedelta = timedelta(days=7)
    soft_window: timedelta = timedelta(days=30)
    #: Domain incident: at least this many distinct addresses hard-bounced at one domain, and at
    #: least this fraction of that domain's attempts, within the window.
    incident_addresses: int = 20
    incident_fraction: float = 0.5
    incident_window: timedelta = timedelta(hours=1)
    #: Alerts and throttles expire; suppressions do not unless a reason has an expiry here.
    alert_lifetime: timedelta = timedelta(days=7)
    suppression_expiry: dict[Reason, timedelta] = field(default_factory=dict)
    #: The reasons that count as a soft strike on the address (DESIGN.md: mailbox full,
    #: inactive-leaning failures, expired retries); other deferrals are the destination's.
    soft_reasons: frozenset[Reason] = frozenset(
        {Reason.MAILBOX_FULL, Reason.SUSPEND, Reason.EXPIRED}
    )
    #: An expiry is no strike when the delivery's last deferral was one of these faults: the
    #: sender's (a blocklist, failed authentication), the message's, or the destination's own
    #: state (push-back, greylisting, a full or failing server). Retrying for days against them
    #: says nothing about the address (DESIGN.md: never suppress an address for the sender's
    #: block).
    expiry_exempt_faults: frozenset[Fault] = frozenset(
        {Fault.SENDER, Fault.MESSAGE, Fault.DESTINATION}
    )


@dataclass(frozen=True, slots=True)
class ReputationPolicy:
    """The sender-wide bounce and complaint rates the big providers and ESPs act on.

    Rates at or above `*_review` ask for a look at the list; at or above `*_pause` a provider or
    ESP is likely to stop taking the sender's mail. Defaults: Amazon SES puts an account under
    review at a 5% bounce rate and may pause it at 10%, and does the same for complaints at 0.1%
    and 0.5%; Google's sender guidelines ask bulk senders to keep the spam rate reported in
    Postmaster Tools below 0.1% and never let it reach 0.3%; Yahoo's sender requirements
    likewise ask for a complaint rate below 0.3%.
    """

    #: Bounce rate = hard bounces / messages with a final result (delivered, bounced, blocked).
    bounce_review: float = 0.05
    bounce_pause: float = 0.10
    #: Complaint rate = complaints / messages delivered (Google's "spam rate" has this base).
    complaint_review: float = 0.001
    complaint_pause: float = 0.005
    #: The windows rates are computed over (Google Postmaster Tools and SES both look back
    #: over days to weeks, not hours).
    windows: tuple[timedelta, ...] = (timedelta(days=7), timedelta(days=30))
    #: Below this many messages in a window, a rate says too little to act on.
    min_messages: int = 100


# --------------------------------------------------------------------------------------------
# Classification rules and the policy files (see docs/policy.md for the format).
# --------------------------------------------------------------------------------------------

#: The keys a `[[rule]]` table may hold.
RULE_KEYS = frozenset(
    {
        "id",
        "text",
        "status",
        "code",
        "class",
        "command",
        "outcome",
        "reason",
        "fault",
        "decisive",
        "throttle",
        "retry_after",
        "pause",
        "source",
        "why",
    }
)
#: Command names as `parse_reply` reports them.
COMMANDS = frozenset(
    {"CONNECT", "EHLO", "HELO", "MAIL FROM", "RCPT TO", "DATA", "STARTTLS", "AUTH", "QUIT", "RSET"}
)

_DURATION_RE = re.compile(r"(\d+)\s*([smhdw])")
_DURATION_FULL_RE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RULE_ID_RE = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_CODE_PATTERN_RE = re.compile(r"^[1-5][0-9x][0-9x]$")
_STATUS_PART_RE = re.compile(r"^(?:\d{1,3}|\*)$")


#: The longest duration a policy or an option may give: a retention, a lifetime or a window
#: longer than a century says nothing more, and every time plus it must stay in the calendar.
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """Read a duration such as ``"90s"``, ``"30m"``, ``"4h"``, ``"5d"``, ``"1w"`` or ``"1h30m"``.

    Raises ValueError naming the text when it is not one.
    """
    if not isinstance(text, str) or not _DURATION_FULL_RE.match(text):
        raise ValueError(
            f"not a duration: {_toml(text)}"
            " (expected a number and a unit s, m, h, d or w, like '30m')"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text))
    if seconds > MAX_DURATION.total_seconds():
        # A run adds its windows and lifetimes to its time: a longer one ends past the calendar
        # (datetime.max) and stopped every run with "date value out of range".
        raise ValueError(f"duration {_toml(text)} is longer than {MAX_DURATION.days}d (100 years)")
    return timedelta(seconds=seconds)


def _positive_duration(text: str) -> timedelta:
    """`parse_duration`, refusing zero: a rule's retry or pause, or a suppression's expiry, of no
    time at all is a typo (a retry at once, a throttle that holds nothing, a suppression that
    never holds), as it is for the numbers, whose zero durations `_range_problem` refuses."""
    value = parse_duration(text)
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {_toml(text)}")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest duration string that `parse_duration` reads back to the same value."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"

    def written(units: tuple[str, ...]) -> str:
        rest, parts = seconds, []
        for unit in units:
            size = _UNIT_SECONDS[unit]
            if rest >= size:
                count, rest = divmod(rest, size)
                parts.append(f"{count}{unit}")
        return "".join(parts)

    # Weeks only where they make it shorter: "2w", but "30d" and "90d" rather than "4w2d" and
    # "12w6d", which read back the same and read worse.
    with_weeks, in_days = written(("w", "d", "h", "m", "s")), written(("d", "h", "m", "s"))
    return with_weeks if len(with_weeks) <= len(in_days) else in_days


@dataclass(frozen=True, slots=True)
class StatusPattern:
    """An enhanced status pattern of a rule: ``5.1.1``, ``X.1.1`` (any class), ``5.7.*``."""

    klass: int | None
    subject: int | None
    detail: int | None

    @classmethod
    def parse(cls, text: str) -> StatusPattern:
        parts = text.strip().split(".") if isinstance(text, str) else []
        if len(parts) != 3:
            raise ValueError(f"not a status pattern: {text!r} (expected like '5.1.1', 'X.1.1')")
        head, subject, detail = parts
        if head in ("X", "x", "*"):
            klass = None
        elif head in ("2", "4", "5"):
            klass = int(head)
        else:
            raise ValueError(f"status pattern {text!r}: the class must be 2, 4, 5 or X")
        if not (_STATUS_PART_RE.match(subject) and _STATUS_PART_RE.match(detail)):
            raise ValueError(f"status pattern {text!r}: subject and detail are numbers or '*'")
        return cls(
            klass,
            None if subject == "*" else int(subject),
            None if detail == "*" else int(detail),
        )

    def matches(self, status: StatusCode) -> bool:
        return (
            (self.klass is None or self.klass == status.klass)
            and (self.subject is None or self.subject == status.subject)
            and (self.detail is None or self.detail == status.detail)
        )

    def covers(self, other: StatusPattern) -> bool:
        """True when every status `other` matches, this pattern matches too."""
        return all(
            mine is None or mine == theirs
            for mine, theirs in (
                (self.klass, other.klass),
                (self.subject, other.subject),
                (self.detail, other.detail),
            )
        )

    def __str__(self) -> str:
        def part(v: int | None, wild: str) -> str:
            return wild if v is None else str(v)

        return f"{part(self.klass, 'X')}.{part(self.subject, '*')}.{part(self.detail, '*')}"


# A text pattern that is a plain literal: optional leading inline flags, then no character that
# means anything to `re` (``#`` and whitespace matter under the x flag, so ``#`` is excluded too).
_LITERAL_RE = re.compile(r"(?:\(\?([aiLmsux]+)\))?([^.^$*+?{}\[\]\\|()#]*)")


def _literal_covers(earlier: str, later: str) -> bool:
    """True when the text pattern `earlier` matches every text `later` matches, in the one case
    that is decidable at a glance: both are plain literals with the same flags and `earlier` is
    found inside `later` (rules are applied with ``search``, so the longer literal implies the
    shorter). Anything else is not claimed, so no rule is called shadowed wrongly."""
    a, b = _LITERAL_RE.fullmatch(earlier), _LITERAL_RE.fullmatch(later)
    if a is None or b is None or not a.group(2):
        return False
    flags_a, flags_b = set(a.group(1) or ""), set(b.group(1) or "")
    if flags_a != flags_b:
        return False
    if "i" in flags_a:
        # Case folding beyond ASCII differs between str.lower and re.IGNORECASE: ASCII only.
        if not (a.group(2).isascii() and b.group(2).isascii()):
            return False
        return a.group(2).lower() in b.group(2).lower()
    return a.group(2) in b.group(2)


def expand_code_pattern(pattern: int | str) -> frozenset[int]:
    """The basic codes a rule's code pattern stands for: ``550``, ``"55x"``, ``"5xx"``."""
    text = str(pattern).strip().lower()
    if isinstance(pattern, bool) or not _CODE_PATTERN_RE.match(text):
        raise ValueError(
            f"not a reply code pattern: {pattern!r} (expected like 550, '55x' or '5xx')"
        )
    return frozenset(
        c for c in range(100, 600) if all(p in ("x", d) for p, d in zip(text, str(c), strict=True))
    )


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled classification rule; `origin` says where it was written (file:line)."""

    id: str
    outcome: Outcome
    reason: Reason
    fault: Fault
    text: str | None = None
    status: tuple[StatusPattern, ...] = ()
    code: tuple[str, ...] = ()
    classes: frozenset[int] | None = None
    commands: frozenset[str] | None = None
    decisive: bool = False
    throttle: bool = False
    retry_after: timedelta | None = None
    pause: timedelta | None = None
    source: str = ""
    why: str = ""
    origin: str = ""
    #: The basic codes `code` stands for, or None when the rule has no code condition.
    code_set: frozenset[int] | None = field(default=None, compare=False)
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def effective_classes(self) -> frozenset[int] | None:
        """The class digits a reply must have for this rule to match, from every condition."""
        sets: list[frozenset[int]] = []
        if self.classes is not None:
            sets.append(self.classes)
        if self.code_set is not None:
            sets.append(frozenset(c // 100 for c in self.code_set))
        if self.status and all(p.klass is not None for p in self.status):
            sets.append(frozenset(p.klass for p in self.status if p.klass is not None))
        if not sets:
            return None
        result = sets[0]
        for s in sets[1:]:
            result &= s
        return result

    def covers(self, other: Rule) -> bool:
        """True when this rule matches every reply `other` matches (so `other`, placed after it,
        can never win)."""
        if (
            self.text is not None
            and self.text != other.text
            and (other.text is None or not _literal_covers(self.text, other.text))
        ):
            return False
        if self.status and not (
            other.status and all(any(a.covers(b) for a in self.status) for b in other.status)
        ):
            return False
        if self.code_set is not None and not (
            other.code_set is not None and other.code_set <= self.code_set
        ):
            return False
        if self.classes is not None:
            theirs = other.effective_classes
            if theirs is None or not theirs <= self.classes:
                return False
        return self.commands is None or (
            other.commands is not None and other.commands <= self.commands
        )

    def as_dict(self) -> dict[str, Any]:
        """The rule as its TOML table would write it (for `policy show`)."""
        out: dict[str, Any] = {"id": self.id}
        if self.text is not None:
            out["text"] = self.text
        if self.status:
            out["status"] = [str(p) for p in self.status]
        if self.code:
            out["code"] = [int(c) if c.isdigit() else c for c in self.code]
        if self.classes is not None:
            out["class"] = sorted(self.classes)
        if self.commands is not None:
            out["command"] = sorted(self.commands)
        out.update(outcome=self.outcome.value, reason=self.reason.value, fault=self.fault.value)
        if self.decisive:
            out["decisive"] = True
        if self.throttle:
            out["throttle"] = True
        if self.retry_after is not None:
            out["retry_after"] = format_duration(self.retry_after)
        if self.pause is not None:
            out["pause"] = format_duration(self.pause)
        out["source"] = self.source
        if self.why:
            out["why"] = self.why
        if self.origin:
            out["origin"] = self.origin
        return out


@dataclass(frozen=True, eq=False)
class Policy:
    """The effective policy: ordered rules (first match wins) and the numbers.

    Compared by identity: a policy is loaded once and shared; `classify` keeps its compiled index
    per policy object.
    """

    rules: tuple[Rule, ...]
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)
    reputation: ReputationPolicy = field(default_factory=ReputationPolicy)
    source_files: tuple[str, ...] = ()

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id; KeyError when there is none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def as_dict(self) -> dict[str, Any]:
        """The effective policy as plain data (for `policy show`)."""
        data: dict[str, Any] = {name: _numbers_as_dict(getattr(self, name)) for name in SECTIONS}
        data["source_files"] = list(self.source_files)
        data["rule"] = [r.as_dict() for r in self.rules]
        return data


def _numbers_as_dict(numbers: _Numbers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(numbers):
        value = getattr(numbers, f.name)
        if isinstance(value, timedelta):
            out[f.name] = format_duration(value)
        elif f.name == "provider_domains":
            mx = getattr(numbers, "provider_mx_suffixes", {})
            providers = {
                name: {"domains": list(doms), "mx_suffixes": list(mx.get(name, ()))}
                for name, doms in value.items()
            }
            for name, suffixes in mx.items():
                providers.setdefault(name, {"domains": [], "mx_suffixes": list(suffixes)})
            out["providers"] = providers
        elif f.name == "provider_mx_suffixes":
            continue
        elif f.name == "suppression_expiry":
            out[f.name] = {str(k): format_duration(v) for k, v in value.items()}
        elif isinstance(value, frozenset):
            out[f.name] = sorted(str(v) for v in value)
        elif isinstance(value, tuple):
            out[f.name] = [format_duration(v) if isinstance(v, timedelta) else v for v in value]
        else:
            out[f.name] = value
    return out


# --------------------------------------------------------------------------------------------
# Reading policy files.
# --------------------------------------------------------------------------------------------

_DATA = "data"
#: Policy files and rule patterns past these sizes are refused (with a problem naming them)
#: rather than parsed and compiled at length.
MAX_POLICY_CHARS = 1_000_000
MAX_RULE_TEXT = 2_000
DEFAULT_POLICY_FILE = "default_policy.toml"
PROVIDER_RULES_FILE = "provider_rules.toml"

_Numbers = BackoffPolicy | ThrottlePolicy | HygienePolicy | ReputationPolicy
#: The tables of numbers a policy file may hold, by name; with `[[rule]]`, the whole schema.
SECTIONS: dict[str, type[_Numbers]] = {
    "backoff": BackoffPolicy,
    "throttle": ThrottlePolicy,
    "hygiene": HygienePolicy,
    "reputation": ReputationPolicy,
}


def _toml(value: Any) -> str:
    """A value as the TOML file has it, for a problem to quote: `true`, not Python's `True`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


class _Lines:
    """Line numbers of tables and keys in a TOML text, found by scanning it.

    tomllib gives values but no positions; policy problems must name the line, so this reads the
    headers (``[a.b]``, ``[[rule]]``) and ``key =`` lines. Keys inside multi-line strings could
    fool it; policy files do not have those in practice, and the worst case is a wrong line.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\"'-]+)\s*=")

    def __init__(self, text: str) -> None:
        # (table name, array index or None) -> (header line, {key: line})
        self.tables: dict[tuple[str, int | None], tuple[int, dict[str, int]]] = {
            ("", None): (0, {})
        }
        counts: dict[str, int] = {}
        current: tuple[str, int | None] = ("", None)
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                name = header.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    current = (name, index)
                else:
                    current = (name, None)
                self.tables[current] = (number, {})
                continue
            key = self._KEY.match(line)
            if key:
                keys = self.tables[current][1]
                keys.setdefault(key.group(1).strip("\"'"), number)

    def table(self, name: str, index: int | None = None) -> int | None:
        found = self.tables.get((name, index))
        return found[0] or None if found else None

    def key(self, name: str, key: str, index: int | None = None) -> int | None:
        found = self.tables.get((name, index))
        if not found:
            return None
        return found[1].get(key, found[0] or None)


class _Reader:
    """Reads one policy file into rules and number overrides, collecting every problem."""

    def __init__(self, label: str, text: str, *, shipped: bool) -> None:
        self.label = label
        self.text = text
        self.shipped = shipped
        self.problems: list[Problem] = []
        self.lines = _Lines(text)
        self.rules: list[Rule] = []
        self.overrides: dict[str, dict[str, Any]] = {}

    def problem(
        self, line: int | None, key: str, message: str, fix: str, severity: str = "error"
    ) -> None:
        self.problems.append(Problem(severity, self.label, line, key, message, fix))

    def read(self, *, rules_only: bool = False) -> None:
        if len(self.text) > MAX_POLICY_CHARS:
            self.problem(
                None,
                "(size)",
                f"the file is {len(self.text):,} characters; the limit is {MAX_POLICY_CHARS:,}",
                "a policy file holds numbers and rules: split out whatever made it this big",
            )
            return
        try:
            data = tomllib.loads(self.text)
        except RecursionError:
            self.problem(
                None,
                "(syntax)",
                "not valid TOML: arrays or tables are nested too deep",
                "flatten the nested arrays or tables",
            )
            return
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            if m:
                line: int | None = int(m.group(1))
            elif "end of document" in str(exc):
                line = max(1, len(self.text.splitlines()))
            else:
                line = None
            self.problem(
                line,
                "(syntax)",
                f"not valid TOML: {exc}",
                "correct the TOML syntax at that place",
            )
            return
        for key, value in data.items():
            if key == "rule":
                self._read_rules(value)
            elif key in SECTIONS and not rules_only:
                self._read_section(key, value)
            else:
                allowed = "rule" if rules_only else ", ".join([*SECTIONS, "rule"])
                self.problem(
                    self.lines.table(key) or self.lines.key("", key),
                    key,
                    f"unknown key {key!r}",
                    f"the top-level keys are: {allowed}",
                )
        self._check_shadowing()

    # ---- numbers ------------------------------------------------------------------------

    def _read_section(self, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            # Written as a plain value (`hygiene = 3`) or an array of tables ([[hygiene]]).
            line = self.lines.table(name, 0) or self.lines.key("", name)
            self.problem(line, name, "must be a table", f"write it as [{name}]")
            return
        numbers = SECTIONS[name]()
        known = {f.name: f for f in fields(numbers)}
        out: dict[str, Any] = {}
        for key, value in table.items():
            where = self.lines.key(name, key)
            dotted = f"{name}.{key}"
            if name == "throttle" and key == "providers":
                self._read_providers(value, out)
                continue
            if name == "hygiene" and key == "suppression_expiry":
                self._read_expiry(value, out)
                continue
            if name == "throttle" and key == "relay_hosts":
                self._read_relay_hosts(value, where, out)
                continue
            if key not in known or key in ("provider_domains", "provider_mx_suffixes"):
                names = ", ".join(
                    sorted(
                        [k for k in known if not k.startswith("provider_")]
                        + (["providers"] if name == "throttle" else [])
                    )
                )
                self.problem(
                    where, dotted, f"unknown key {key!r}", f"the keys of [{name}] are: {names}"
                )
                continue
            default = getattr(numbers, key)
            converted = self._convert_number(dotted, where, default, value)
            if converted is not None:
                out[key] = converted
        if name == "reputation":
            effective = replace(ReputationPolicy(), **out)
            for kind in ("bounce", "complaint"):
                review, pause = (
                    getattr(effective, f"{kind}_review"),
                    getattr(effective, f"{kind}_pause"),
                )
                if not review < pause:
                    self.problem(
                        self.lines.key(name, f"{kind}_review"),
                        f"reputation.{kind}_review",
                        f"must be below {kind}_pause ({review} is not below {pause})",
                        "the review rate comes before the pause rate",
                    )
        self._check_order(name, out)
        self.overrides[name] = out

    def _check_order(self, name: str, out: dict[str, Any]) -> None:
        """Numbers of one section that must not contradict each other, reported at the key the
        file set (the smaller one when it set both)."""
        defaults = SECTIONS[name]()
        effective = replace(defaults, **out)
        for small, large, severity, why in _ORDERED.get(name, ()):
            low, high = getattr(effective, small), getattr(effective, large)
            if low <= high or (small not in out and large not in out):
                continue
            if isinstance(low, timedelta):
                more, less = "longer", "shorter"
                shown_low, shown_high = _days(low), _days(high)
            else:
                more, less = "above", "below"
                shown_low, shown_high = repr(low), repr(high)
            then = " than" if more == "longer" else ""
            if small in out:
                key = small
                message = (
                    f"must not be {more}{then} {large} ({shown_low} is {more}{then} {shown_high})"
                )
            else:
                key = large
                message = (
                    f"must not be {less}{then} {small} ({shown_high} is {less}{then} {shown_low})"
                )
            shipped = (
                f"{_toml_example(getattr(defaults, small))} and "
                f"{_toml_example(getattr(defaults, large))}"
            )
            self.problem(
                self.lines.key(name, key),
                f"{name}.{key}",
                message,
                f"{why}make {small} at most {large} (shipped: {shipped})",
                severity,
            )

    def _convert_number(self, key: str, line: int | None, default: Any, value: Any) -> Any:
        example = f"{key.split('.', 1)[1]} = {_toml_example(default)}"
        if isinstance(default, frozenset):
            # A set of names: reasons (hygiene.soft_reasons) or faults
            # (hygiene.expiry_exempt_faults), as the shipped default's members are.
            kind: type[Reason] | type[Fault] = (
                Fault if any(isinstance(v, Fault) for v in default) else Reason
            )
            noun = kind.__name__.lower()
            names = _FAULTS if kind is Fault else _REASONS
            items = _as_list(value)
            if not all(isinstance(v, str) for v in items):
                self.problem(
                    line,
                    key,
                    f"expected a list of {noun} names, got {_toml(value)}",
                    f"write a list of {noun}s, like {example}",
                )
                return None
            wrong = [v for v in items if v not in names]
            if wrong:
                self.problem(line, key, f"unknown {noun}(s) {wrong!r}", _choices(names))
                return None
            return frozenset(kind(v) for v in items)
        if isinstance(default, tuple):
            # A list of durations (reputation.windows).
            try:
                windows = tuple(parse_duration(v) for v in _as_list(value))
            except ValueError as exc:
                self.problem(line, key, str(exc), "write a list of durations like ['7d', '30d']")
                return None
            if not windows or any(w <= timedelta(0) for w in windows):
                self.problem(
                    line,
                    key,
                    "must be a non-empty list of positive durations",
                    "write a list of durations like ['7d', '30d']",
                )
                return None
            return windows
        if isinstance(default, timedelta):
            try:
                result: Any = parse_duration(value)
            except ValueError as exc:
                self.problem(line, key, str(exc), "write a duration like '30m', '4h' or '5d'")
                return None
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                self.problem(
                    line,
                    key,
                    f"expected true or false, got {_toml(value)}",
                    f"write true or false, like {example}",
                )
                return None
            result = value
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                self.problem(
                    line,
                    key,
                    f"expected a whole number, got {_toml(value)}",
                    f"write a whole number, like {example}",
                )
                return None
            result = value
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.problem(
                    line,
                    key,
                    f"expected a number, got {_toml(value)}",
                    f"write a number, like {example}",
                )
                return None
            result = float(value)
        else:  # pragma: no cover - every number field has one of the types above
            result = value
        problem = _range_problem(key, result)
        if problem:
            message, fix, severity = problem
            self.problem(line, key, message, fix, severity)
            if severity == "error":
                return None
        return result

    def _read_providers(self, value: Any, out: dict[str, Any]) -> None:
        line = self.lines.key("throttle", "providers") or self.lines.table("throttle.providers")
        if not isinstance(value, dict):
            self.problem(
                line,
                "throttle.providers",
                "must be a table of provider groups",
                "write one [throttle.providers.NAME] table per group, with domains and mx_suffixes",
            )
            return
        domains: dict[str, tuple[str, ...]] = {}
        suffixes: dict[str, tuple[str, ...]] = {}
        for group, spec in value.items():
            table = f"throttle.providers.{group}"
            gline = self.lines.table(table) or line
            if not isinstance(spec, dict):
                self.problem(
                    gline,
                    table,
                    "must be a table with domains and mx_suffixes",
                    f"write [{table}] with domains = ['example.com'] and "
                    "mx_suffixes = ['.mx.example.com']",
                )
                continue
            for key, items in spec.items():
                kline = self.lines.key(table, key) or gline
                if key not in ("domains", "mx_suffixes"):
                    self.problem(
                        kline, f"{table}.{key}", f"unknown key {key!r}", "use domains, mx_suffixes"
                    )
                    continue
                if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                    sample = "'example.com'" if key == "domains" else "'.mx.example.com'"
                    self.problem(
                        kline,
                        f"{table}.{key}",
                        f"must be a list of strings, got {_toml(items)}",
                        f"write it like {key} = [{sample}]",
                    )
                    continue
                try:
                    names = tuple(_host_name(i, suffix=key == "mx_suffixes") for i in items)
                except ValueError as exc:
                    sample = "'example.com'" if key == "domains" else "'.mx.example.com'"
                    self.problem(
                        kline,
                        f"{table}.{key}",
                        str(exc),
                        f"write host names without wildcards, like {key} = [{sample}]",
                    )
                    continue
                target = domains if key == "domains" else suffixes
                target[group] = names
        out["provider_domains"] = domains
        out["provider_mx_suffixes"] = suffixes

    def _read_relay_hosts(self, value: Any, line: int | None, out: dict[str, Any]) -> None:
        try:
            if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
                raise ValueError(f"must be a list of host names, got {_toml(value)}")
            out["relay_hosts"] = tuple(_host_name(h).lstrip(".") for h in value)
        except ValueError as exc:
            self.problem(
                line,
                "throttle.relay_hosts",
                str(exc),
                "write it like relay_hosts = ['smtp.relay.example.net']",
            )

    def _read_expiry(self, value: Any, out: dict[str, Any]) -> None:
        table = "hygiene.suppression_expiry"
        line = self.lines.table(table) or self.lines.key("hygiene", "suppression_expiry")
        if not isinstance(value, dict):
            self.problem(
                line,
                table,
                "must be a table of reason = duration",
                f"write [{table}] with lines like mailbox_full = '180d'",
            )
            return
        expiry: dict[Reason, timedelta] = {}
        for reason, duration in value.items():
            kline = self.lines.key(table, reason) or line
            if reason not in _REASONS:
                self.problem(
                    kline, f"{table}.{reason}", f"unknown reason {reason!r}", _choices(_REASONS)
                )
                continue
            try:
                expiry[Reason(reason)] = _positive_duration(duration)
            except ValueError as exc:
                self.problem(kline, f"{table}.{reason}", str(exc), "write a duration like '180d'")
        out["suppression_expiry"] = expiry

    # ---- rules --------------------------------------------------------------------------

    def _read_rules(self, value: Any) -> None:
        if not isinstance(value, list):
            self.problem(
                self.lines.table("rule") or self.lines.key("", "rule"),
                "rule",
                "must be an array of tables",
                "write [[rule]]",
            )
            return
        seen: dict[str, int | None] = {}
        for index, table in enumerate(value):
            line = self.lines.table("rule", index)
            if not isinstance(table, dict):
                self.problem(line, f"rule[{index}]", "must be a table", "write [[rule]]")
                continue
            rule = self._read_rule(index, table)
            # The id is checked whether or not the rest of the rule reads: a rule with other
            # errors must not hide that its id is taken too.
            raw_id = table.get("id")
            if isinstance(raw_id, str) and raw_id:
                if raw_id in seen:
                    self.problem(
                        self.lines.key("rule", "id", index),
                        f"rule {raw_id}.id",
                        f"duplicate rule id {raw_id!r} (first at line {seen[raw_id]})",
                        "give each rule its own id",
                    )
                    continue
                seen[raw_id] = line
            if rule is not None:
                self.rules.append(rule)

    def _read_rule(self, index: int, table: dict[str, Any]) -> Rule | None:
        line = self.lines.table("rule", index)
        raw_id = table.get("id")
        name = f"rule {raw_id}" if isinstance(raw_id, str) and raw_id else f"rule[{index}]"
        errors_before = self._error_count()

        def at(key: str) -> int | None:
            return self.lines.key("rule", key, index)

        def bad(key: str, message: str, fix: str, severity: str = "error") -> None:
            self.problem(at(key), f"{name}.{key}", message, fix, severity)

        for key in table:
            if key not in RULE_KEYS:
                bad(
                    key,
                    f"unknown key {key!r}",
                    "the rule keys are: " + ", ".join(sorted(RULE_KEYS)),
                )
        if not isinstance(raw_id, str) or not _RULE_ID_RE.match(raw_id):
            self.problem(
                at("id") if "id" in table else line,
                f"{name}.id",
                "missing or malformed id" if raw_id is not None else "missing id",
                "give the rule a unique dotted id like 'example.no_such_user'",
            )
        regex: re.Pattern[str] | None = None
        text = table.get("text")
        if text is not None:
            if not isinstance(text, str) or not text:
                bad(
                    "text",
                    "must be a non-empty string (a regular expression)",
                    "write a regular expression in quotes, like text = '(?i)user unknown'",
                )
            elif len(text) > MAX_RULE_TEXT:
                bad(
                    "text",
                    f"the pattern is {len(text):,} characters; the limit is {MAX_RULE_TEXT:,}",
                    "split it into several rules",
                )
            else:
                try:
                    regex = re.compile(text)
                except re.error as exc:
                    bad("text", f"bad regular expression: {exc}", "fix the regular expression")
        status: list[StatusPattern] = []
        for item in _as_list(table.get("status")):
            try:
                pattern = StatusPattern.parse(item)
            except ValueError as exc:
                bad("status", str(exc), "write patterns like '5.1.1', 'X.1.1' or '5.7.*'")
                continue
            status.append(pattern)
            if pattern.subject is not None and pattern.subject > 7:
                # The parser drops such a status (RFC 3463 section 3.1), so no reply carries it.
                bad(
                    "status",
                    f"status pattern {item!r} can never match: subject {pattern.subject} is not"
                    " 0 to 7 (RFC 3463 section 3.1), so no reply carries it",
                    "use a subject from 0 to 7, or drop this pattern",
                    severity="warning",
                )
        codes: list[str] = []
        code_set: frozenset[int] | None = None
        if "code" in table:
            code_set = frozenset()
            for item in _as_list(table.get("code")):
                try:
                    code_set |= expand_code_pattern(item)
                    codes.append(str(item).lower())
                except ValueError as exc:
                    bad("code", str(exc), "write codes like 550, '55x' or '5xx'")
        classes: frozenset[int] | None = None
        if "class" in table:
            items = _as_list(table.get("class"))
            if not items or not all(
                isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 5 for c in items
            ):
                bad(
                    "class",
                    f"must be class digits 1 to 5, got {table.get('class')!r}",
                    "write a list of class digits, like class = [4, 5]",
                )
            else:
                classes = frozenset(items)
        commands: frozenset[str] | None = None
        if "command" in table:
            items = _as_list(table.get("command"))
            wrong = [c for c in items if not isinstance(c, str) or c.upper() not in COMMANDS]
            if wrong or not items:
                bad("command", f"unknown command(s) {wrong!r}", _choices(COMMANDS))
            else:
                commands = frozenset(c.upper() for c in items)
        if not any(k in table for k in ("text", "status", "code", "class", "command")):
            self.problem(
                line,
                name,
                "the rule has no condition, so it would match every reply",
                "add at least one of text, status, code, class, command",
            )
        outcome = self._enum(table, "outcome", Outcome, bad)
        reason = self._enum(table, "reason", Reason, bad)
        fault = self._enum(table, "fault", Fault, bad)
        flags = {}
        for key in ("decisive", "throttle"):
            value = table.get(key, False)
            if not isinstance(value, bool):
                bad(
                    key,
                    f"expected true or false, got {_toml(value)}",
                    f"write true or false, like {key} = true",
                )
            flags[key] = value is True
        durations: dict[str, timedelta | None] = {}
        for key in ("retry_after", "pause"):
            durations[key] = None
            if key in table:
                try:
                    durations[key] = _positive_duration(table[key])
                except ValueError as exc:
                    bad(key, str(exc), "write a duration like '5m', '1h'")
        strings: dict[str, str] = {}
        for key in ("source", "why"):
            value = table.get(key, "")
            if not isinstance(value, str):
                bad(
                    key,
                    f"expected a string, got {_toml(value)}",
                    f"write text in quotes, like {key} = 'RFC 5321 section 4.2.3'"
                    if key == "source"
                    else f"write text in quotes, like {key} = 'The mailbox does not exist.'",
                )
                value = ""
            strings[key] = value.strip()
        if not strings["source"] and isinstance(table.get("source", ""), str):
            # (A source of the wrong type is reported above; saying it is missing too misleads.)
            bad(
                "source",
                "the rule does not say where it comes from",
                "add source = the RFC section or the public page the rule is based on",
                severity="error" if self.shipped else "warning",
            )
        if (
            self._error_count() > errors_before
            or outcome is None
            or reason is None
            or fault is None
            or not isinstance(raw_id, str)
        ):
            return None
        return Rule(
            id=raw_id,
            outcome=outcome,
            reason=reason,
            fault=fault,
            text=text,
            status=tuple(status),
            code=tuple(codes),
            classes=classes,
            commands=commands,
            decisive=flags["decisive"],
            throttle=flags["throttle"],
            retry_after=durations["retry_after"],
            pause=durations["pause"],
            source=strings["source"],
            why=strings["why"],
            origin=f"{self.label}:{line}" if line else self.label,
            code_set=code_set,
            regex=regex,
        )

    def _enum(self, table: dict[str, Any], key: str, enum: type[E], bad: Any) -> E | None:
        value = table.get(key)
        if value is None:
            bad(key, f"missing {key}", _choices({e.value for e in enum}))
            return None
        try:
            return enum(value)
        except ValueError:
            bad(key, f"unknown {key} {value!r}", _choices({e.value for e in enum}))
            return None

    def _error_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    def _check_shadowing(self) -> None:
        for later_index, later in enumerate(self.rules):
            for earlier in self.rules[:later_index]:
                if earlier.covers(later):
                    self.problem(
                        _line_of(later.origin),
                        f"rule {later.id}",
                        f"can never match: rule {earlier.id!r} (line {_line_of(earlier.origin)}) "
                        "comes first and matches every reply this one matches",
                        "move this rule before the other one, or narrow the other one",
                    )
                    break


#: Numbers of one section where the first must not exceed the second: (first, second, severity,
#: why, as the start of the fix).
_ORDERED: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "backoff": (
        ("first_retry", "max_interval", "warning", "the cap would shorten the first retry: "),
    ),
    "throttle": (
        ("initial_pause", "max_pause", "warning", "the cap would shorten the first pause: "),
        (
            "initial_pause",
            "repeat_window",
            "warning",
            "a push-back once the pause is over would fall outside the window, so the pause "
            "would never grow (pause_multiplier and max_pause would do nothing): ",
        ),
        ("min_rate", "initial_rate", "warning", "the floor would raise the first rate: "),
    ),
    "hygiene": (
        (
            "soft_span",
            "soft_window",
            "error",
            "strikes are counted within soft_window, so they could never span more and no "
            "address would ever be suppressed for soft failures: ",
        ),
    ),
}

E = TypeVar("E", Outcome, Reason, Fault)
_REASONS = frozenset(r.value for r in Reason)
_FAULTS = frozenset(f.value for f in Fault)


def _days(value: timedelta) -> str:
    """A duration as a person writes it in a policy file: whole days in days ("40d")."""
    seconds = int(value.total_seconds())
    return f"{seconds // 86400}d" if seconds and not seconds % 86400 else format_duration(value)


def _toml_example(value: Any) -> str:
    """A policy default written as it would be in the TOML file, for a fix's example."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return repr(_days(value))
    if isinstance(value, frozenset | tuple | list):
        return "[" + ", ".join(_toml_example(v) for v in sorted(value, key=str)) + "]"
    if isinstance(value, Reason | Fault):
        return repr(value.value)
    return repr(value)


def _host_name(text: str, *, suffix: bool = True) -> str:
    """A provider group's domain or MX suffix, or a relay host, as the store writes domains
    (`addresses.normalize_domain`: lower case, IDNA-encoded, no final dot), or ValueError naming
    it. Matching is on whole labels (`hygiene._ends_with_any`), so a wildcard, an empty name or a
    stray character would never match anything: the entry is refused rather than kept as a
    no-op. A suffix keeps its leading dot, which only says it is a suffix."""
    bare = text.strip()
    dot = "." if suffix and bare.startswith(".") else ""
    try:
        name = normalize_domain(bare[1:] if dot else bare)
    except AddressError as exc:
        raise ValueError(f"not a host name: {_toml(text)} ({exc.problem})") from None
    if name.startswith("["):
        raise ValueError(f"not a host name: {_toml(text)} (an address literal)")
    return dot + name


def _choices(values: Iterable[str]) -> str:
    return "one of: " + ", ".join(sorted(values))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _line_of(origin: str) -> int | None:
    tail = origin.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _range_problem(key: str, value: Any) -> tuple[str, str, str] | None:
    """(message, fix, severity) when a policy number is out of its sensible range."""
    name = key.split(".", 1)[1]
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            return "must be longer than zero", "give a positive duration", "error"
        if key == "backoff.first_retry" and value < timedelta(minutes=30):
            return (
                "RFC 5321 section 4.5.4.1 asks for at least 30 minutes between retries",
                "use '30m' or more",
                "warning",
            )
        if key == "backoff.lifetime" and value < timedelta(days=4):
            return (
                "RFC 5321 section 4.5.4.1 says the give-up time needs to be at least 4-5 days",
                "use '4d' or '5d'",
                "warning",
            )
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if name == "min_messages":
            if value < 0:
                return f"must be 0 or more, got {value}", "use a whole number, like 100", "error"
            return None
        if value < 1:
            return f"must be at least 1, got {value}", "use a whole number of 1 or more", "error"
        return None
    if isinstance(value, float):
        if name in ("multiplier", "pause_multiplier") and not 1.0 <= value <= 10.0:
            return f"must be between 1 and 10, got {value}", "use 2.0 (doubling)", "error"
        if name == "jitter" and not 0.0 <= value <= 0.5:
            return f"must be between 0 and 0.5, got {value}", "use 0.1", "error"
        if name in ("rate_multiplier", "incident_fraction") and not 0.0 < value <= 1.0:
            return f"must be above 0 and at most 1, got {value}", "use 0.5", "error"
        if name in ("initial_rate", "min_rate") and value <= 0:
            return f"must be above 0, got {value}", "use a positive rate per minute", "error"
        if key.startswith("reputation.") and not 0.0 <= value <= 1.0:
            return f"must be a fraction between 0 and 1, got {value}", "write 5% as 0.05", "error"
    return None


def _data_text(name: str) -> str | None:
    # Read beside this module: the package has no __init__.py (a namespace package), which
    # importlib.resources.files() cannot open.
    resource = Path(__file__).with_name(_DATA) / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _read(label: str, text: str, *, shipped: bool, rules_only: bool = False) -> _Reader:
    reader = _Reader(label, text, shipped=shipped)
    reader.read(rules_only=rules_only)
    return reader


def _shipped_readers() -> list[_Reader]:
    readers = []
    provider = _data_text(PROVIDER_RULES_FILE)
    if provider is not None:
        readers.append(_read(PROVIDER_RULES_FILE, provider, shipped=True, rules_only=True))
    default = _data_text(DEFAULT_POLICY_FILE)
    if default is None:
        raise ConfigError(f"the package data file {DEFAULT_POLICY_FILE} is missing: reinstall")
    readers.append(_read(DEFAULT_POLICY_FILE, default, shipped=True))
    return readers


def _build(readers: list[_Reader], user: _Reader | None) -> Policy:
    problems = [p for r in [*readers, *([user] if user else [])] for p in r.problems]
    if any(p.severity == "error" for p in problems):
        raise PolicyError(problems)
    numbers: dict[str, Any] = {}
    for reader in [*readers[::-1], *([user] if user else [])]:
        for section, values in reader.overrides.items():
            merged = numbers.setdefault(section, {})
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
    shipped = [rule for r in readers for rule in r.rules]
    rules = list(user.rules) if user else []
    replaced = {r.id for r in rules}
    rules += [r for r in shipped if r.id not in replaced]
    return Policy(
        rules=tuple(rules),
        backoff=replace(BackoffPolicy(), **numbers.get("backoff", {})),
        throttle=replace(ThrottlePolicy(), **numbers.get("throttle", {})),
        hygiene=replace(HygienePolicy(), **numbers.get("hygiene", {})),
        reputation=replace(ReputationPolicy(), **numbers.get("reputation", {})),
        source_files=tuple(([user.label] if user else []) + [r.label for r in readers]),
    )


@functools.cache
def default_policy() -> Policy:
    """The shipped policy: provider rules, then the standards rules, and the default numbers.

    Loaded once per process.
    """
    return _build(_shipped_readers(), None)


def load_policy(path: Path | str | None = None) -> Policy:
    """The shipped policy, extended and overridden by the user file at `path` when given.

    Raises PolicyError (listing every problem with file and line) when a file has errors, and
    ConfigError when the file cannot be read.
    """
    if path is None:
        return default_policy()
    return _build(_shipped_readers(), _read_user(path))


def check_policy_file(path: Path | str) -> list[Problem]:
    """Every problem of a user policy file, with file and line, in file order (errors and
    warnings; an empty list means the file is clean)."""
    reader = _read_user(path)
    return sorted(reader.problems, key=lambda p: (p.line or 0, p.key))


def check_shipped_files() -> list[Problem]:
    """Every problem of the policy files shipped in the package (for tests and CI)."""
    readers = [
        _read(name, text, shipped=True, rules_only=name == PROVIDER_RULES_FILE)
        for name in (PROVIDER_RULES_FILE, DEFAULT_POLICY_FILE)
        if (text := _data_text(name)) is not None
    ]
    return [p for r in readers for p in r.problems]


def _read_user(path: Path | str) -> _Reader:
    """Read a user policy file; a file that is not UTF-8 is a problem with its line, not a crash."""
    raw = _read_user_file(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reader = _Reader(str(path), "", shipped=False)
        reader.problem(
            raw.count(b"\n", 0, exc.start) + 1,
            "(encoding)",
            f"not UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}",
            "save the file as UTF-8 (the TOML specification requires it)",
        )
        return reader
    return _read(str(path), text, shipped=False)


def _read_user_file(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"policy file {str(path)!r} does not exist (fix: give the path of a policy TOML "
            "file, or unset --policy / DELIVERABILITY_POLICY)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"policy file {str(path)!r} cannot be read: {exc}") from None
