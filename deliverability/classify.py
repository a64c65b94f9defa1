"""Classification: what an SMTP reply means, as a Verdict, decided by the policy's ordered rules.

`classify(reply, policy)` is pure and fast. The policy's rules are compiled once into an index:
for each (basic code, enhanced status, class, command) seen, the rules that can match it are
found once and remembered, so a reply only tries the text patterns of its own bucket. Results for
identical replies are cached in a bounded LRU, because bulk-mail logs repeat the same texts.

After the first matching rule, two standard corrections apply (see docs/policy.md):

- RFC 5321 section 4.2.1: the class digit decides retry or stop. A 4xx reply is transient, so a
  rule that says `bounced` or `blocked` yields `deferred` (same reason and fault, not decisive).
- RFC 3463 section 3.1: the enhanced status's class must agree with the basic code's. When it
  does not (``550 4.2.2``), the verdict is flagged `inconsistent` and rules see the status with
  the basic code's class (``5.2.2``).
"""

from __future__ import annotations

import functools
import re
import weakref
from datetime import timedelta

from deliverability.errors import ReplyParseError
from deliverability.policy import Policy, Rule, default_policy
from deliverability.replies import Reply, StatusCode, parse_reply
from deliverability.verdicts import Verdict
from deliverability.vocabulary import Fault, Outcome, Reason

__all__ = ["classify", "classify_text", "retry_hint"]

#: How many distinct replies each policy's LRU remembers.
CACHE_SIZE = 16_384

# "try again in 300 seconds", "retry in 5 minutes", "please come back in 1 hour",
# "try again after 60s", "wait 10 minutes": a number and a unit after a retry verb.
_HINT_RE = re.compile(
    r"(?i)\b(?:try(?: again)?|retry|come back|resend|wait|deferred for|again)\b"
    r"[^.;\d]{0,30}?(\d{1,6})\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b"
)
# "please come back in 00:05:00" (milter-greylist, Exim greylisting setups).
_HINT_HMS_RE = re.compile(
    r"(?i)\b(?:try(?: again)?|retry|come back|again)\b[^.;\d]{0,30}?\b(\d{1,2}):(\d{2}):(\d{2})\b"
)
_UNIT = {"s": 1, "m": 60, "h": 3600}

_PERMANENT = (Outcome.BOUNCED, Outcome.BLOCKED)

_FALLBACK_SOURCE = "RFC 5321 section 4.2.1 (the class digit)"


def retry_hint(text: str) -> timedelta | None:
    """The wait a reply's text asks for ("try again in 300 seconds"), or None."""
    m = _HINT_RE.search(text)
    if m:
        unit = m.group(2).lower()[0]
        return timedelta(seconds=int(m.group(1)) * _UNIT[unit])
    m = _HINT_HMS_RE.search(text)
    if m:
        h, mnt, s = (int(g) for g in m.groups())
        return timedelta(hours=h, minutes=mnt, seconds=s)
    return None


class _Bucket:
    """The rules that can match one (code, status, class, command) combination, in order.

    Rules with a text condition come first; the list ends at the first rule without one, since
    nothing after it can win.
    """

    __slots__ = ("terminal", "text_rules")

    def __init__(self, text_rules: tuple[Rule, ...], terminal: Rule | None) -> None:
        self.text_rules = text_rules
        self.terminal = terminal

    def first_match(self, text: str) -> Rule | None:
        for rule in self.text_rules:
            assert rule.regex is not None
            if rule.regex.search(text):
                return rule
        return self.terminal


class _Matcher:
    """A policy compiled for fast classification, with its own LRU of verdicts."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.buckets: dict[tuple[int | None, StatusCode | None, int, str | None], _Bucket] = {}
        self.cached = functools.lru_cache(maxsize=CACHE_SIZE)(self._classify)
        self.cached_text = functools.lru_cache(maxsize=CACHE_SIZE)(self._classify_text)

    def bucket(
        self, code: int | None, status: StatusCode | None, klass: int, command: str | None
    ) -> _Bucket:
        key = (code, status, klass, command)
        found = self.buckets.get(key)
        if found is None:
            text_rules: list[Rule] = []
            terminal: Rule | None = None
            for rule in self.policy.rules:
                if not _conditions_match(rule, code, status, klass, command):
                    continue
                if rule.regex is None:
                    terminal = rule
                    break
                text_rules.append(rule)
            found = _Bucket(tuple(text_rules), terminal)
            self.buckets[key] = found
        return found

    def _classify(
        self, code: int | None, status: StatusCode | None, text: str, command: str | None
    ) -> Verdict:
        inconsistent = False
        if (
            code is not None
            and status is not None
            and code // 100 in (2, 4, 5)
            and status.klass != code // 100
        ):
            inconsistent = True
            status = StatusCode(code // 100, status.subject, status.detail)
        klass = code // 100 if code is not None else status.klass if status is not None else 0
        rule = self.bucket(code, status, klass, command).first_match(text)
        return self._verdict(rule, klass, text, inconsistent)

    def _classify_text(self, text: str) -> Verdict | ReplyParseError:
        try:
            reply = parse_reply(text)
        except ReplyParseError as exc:
            return exc
        return self.cached(reply.code, reply.status, reply.text, reply.command)

    def _verdict(self, rule: Rule | None, klass: int, text: str, inconsistent: bool) -> Verdict:
        if rule is None:
            return _fallback(klass, inconsistent)
        outcome, decisive, why = rule.outcome, rule.decisive, rule.why
        if klass == 4 and outcome in _PERMANENT:
            # RFC 5321 section 4.2.1: a 4yz reply is transient whatever its text says.
            outcome, decisive = Outcome.DEFERRED, False
            why = f"{why} (a 4xx reply is transient: retried, not final)".strip()
        retry_after = rule.retry_after
        if outcome is Outcome.DEFERRED and retry_after is None:
            retry_after = retry_hint(text)
            if retry_after is None and rule.reason is Reason.GREYLISTED:
                retry_after = self.policy.backoff.greylist_retry
        if retry_after is not None:
            retry_after = min(retry_after, self.policy.backoff.max_hint)
        return Verdict(
            outcome=outcome,
            reason=rule.reason,
            fault=rule.fault,
            rule=rule.id,
            decisive=decisive and outcome is Outcome.BOUNCED,
            throttle=rule.throttle,
            retry_after=retry_after,
            pause=rule.pause,
            inconsistent=inconsistent,
            why=why,
        )


def _conditions_match(
    rule: Rule, code: int | None, status: StatusCode | None, klass: int, command: str | None
) -> bool:
    if rule.code_set is not None and (code is None or code not in rule.code_set):
        return False
    if rule.status and (status is None or not any(p.matches(status) for p in rule.status)):
        return False
    if rule.classes is not None and klass not in rule.classes:
        return False
    return rule.commands is None or (command is not None and command in rule.commands)


def _fallback(klass: int, inconsistent: bool) -> Verdict:
    """Only reached when a user policy replaced the shipped class-digit rules with narrower ones."""
    outcome = {
        2: Outcome.DELIVERED,
        4: Outcome.DEFERRED,
        5: Outcome.BOUNCED,
    }.get(klass, Outcome.INFORMATIONAL)
    reason = {
        Outcome.DELIVERED: Reason.DELIVERED,
        Outcome.INFORMATIONAL: Reason.INFORMATIONAL,
    }.get(outcome, Reason.UNDEFINED)
    return Verdict(
        outcome=outcome,
        reason=reason,
        fault=Fault.UNKNOWN,
        rule="builtin.class_digit",
        inconsistent=inconsistent,
        why=f"No policy rule matched; the class digit decides ({_FALLBACK_SOURCE}).",
    )


_MATCHERS: weakref.WeakKeyDictionary[Policy, _Matcher] = weakref.WeakKeyDictionary()


def _matcher(policy: Policy | None) -> _Matcher:
    policy = policy if policy is not None else default_policy()
    found = _MATCHERS.get(policy)
    if found is None:
        found = _MATCHERS[policy] = _Matcher(policy)
    return found


def classify(reply: Reply, policy: Policy | None = None) -> Verdict:
    """The verdict of the policy (the shipped default when None) on one reply."""
    return _matcher(policy).cached(reply.code, reply.status, reply.text, reply.command)


def classify_text(text: str, policy: Policy | None = None) -> Verdict:
    """Parse a reply as `parse_reply` does and classify it.

    Raises ReplyParseError (a ValueError) naming the text when it holds no reply. Identical
    texts are parsed once: bulk logs repeat them.
    """
    result = _matcher(policy).cached_text(text)
    if isinstance(result, ReplyParseError):
        raise ReplyParseError(result.text, result.problem)
    return result
