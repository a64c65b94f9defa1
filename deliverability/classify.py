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
from collections.abc import Iterable
from datetime import timedelta
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

from deliverability.errors import ReplyParseError
from deliverability.policy import Policy, Rule, default_policy
from deliverability.replies import Reply, StatusCode, parse_reply
from deliverability.verdicts import Verdict
from deliverability.vocabulary import Fault, Outcome, Reason

__all__ = ["cache_clear", "classify", "classify_text", "retry_hint"]

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


# --------------------------------------------------------------------------------------------
# Literal prefilter. Python's regular expressions try every alternative at every position, so a
# case-insensitive rule with ten alternatives costs tens of microseconds per reply; a bucket can
# hold a hundred such rules. Most rules can only match when the reply contains one of a few
# literal words ("spamhaus", "unauthenticated", ...). Those words are read from each pattern's
# parse tree once; one pass over the lower-cased text finds every such word present, and a rule
# whose words are all absent is skipped without running its pattern. A rule whose words cannot be
# derived is always tried, so the prefilter never changes a result, only its cost.
# --------------------------------------------------------------------------------------------

_MIN_LITERAL = 3  # shorter words would let almost every text through
_MAX_CLASS = 4  # expand small character classes such as [ea] into their letters
_MAX_VARIANTS = 16


#: One required word set: the alphanumeric chunks the token finder looks for, and the exact
#: lower-case literals they come from (one of which must be a substring of the text).
WordSet = tuple[frozenset[str], frozenset[str]]
#: A rule's prefilter: alternatives, each a conjunction of word sets (every set must be touched
#: for that alternative to be possible).
Clauses = tuple[tuple[WordSet, ...], ...]


def required_clauses(pattern: str) -> Clauses | None:
    """For each top-level alternative of `pattern`, the word sets a match must all touch (one
    lower-case word of each set occurs in the text), or None when some alternative has none."""
    try:
        parsed = list(sre_parser.parse(pattern))
    except Exception:  # an internal parser: any surprise means "no prefilter"
        return None
    if len(parsed) == 1 and parsed[0][0] is sre_constants.BRANCH:
        alternatives = [list(a) for a in parsed[0][1][1]]
    else:
        alternatives = [parsed]
    clauses = []
    for alternative in alternatives:
        sets: list[WordSet] = []
        for candidate in _seq_candidates(alternative):
            # The finder works on alphanumeric tokens: a literal occurs only where its longest
            # alphanumeric chunk occurs inside a token, a weaker condition that stays sound.
            chunks = frozenset(_longest_chunk(w) for w in candidate)
            if all(len(c) >= _MIN_LITERAL for c in chunks):
                sets.append((chunks, frozenset(candidate)))
        if not sets:
            return None
        sets.sort(key=lambda ws: (-min(len(w) for w in ws[0]), len(ws[0]), sorted(ws[1])))
        clauses.append(tuple(sets))
    return tuple(clauses)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Lower-case strings of which every match of `pattern` contains at least one, or None when
    no useful set can be derived (the rule is then always tried)."""
    clauses = required_clauses(pattern)
    if clauses is None:
        return None
    return frozenset(w for conjunction in clauses for w in conjunction[0][0])


_CHUNK_RE = re.compile(r"[a-z0-9]+")
# Tokens shorter than the shortest prefilter word cannot contain one.
_TOKEN_RE = re.compile(rf"[a-z0-9]{{{_MIN_LITERAL},}}")


def _longest_chunk(word: str) -> str:
    return max(_CHUNK_RE.findall(word), key=len, default="")


def _seq_candidates(items: list[tuple[Any, Any]]) -> list[set[str]]:
    """Every required-literal set of one sequence of parsed items (each must be touched)."""
    candidates: list[set[str]] = []
    run: set[str] = {""}

    def close_run() -> None:
        nonlocal run
        if run != {""}:
            candidates.append(run)
        run = {""}

    for op, av in items:
        chars = _literal_chars(op, av)
        if chars is not None and len(run) * len(chars) <= _MAX_VARIANTS:
            run = {prefix + c for prefix in run for c in chars}
            continue
        close_run()
        if chars is not None:  # too many variants: start a new run with this item
            run = set(chars)
            continue
        sub = _item_literals(op, av)
        if sub is not None:
            candidates.append(sub)
    close_run()
    return candidates


def _seq_literals(items: list[tuple[Any, Any]]) -> set[str] | None:
    """The most selective required-literal set of one sequence of parsed items."""
    candidates = _seq_candidates(items)
    if not candidates:
        return None
    return max(candidates, key=lambda c: (min(len(w) for w in c), -len(c)))


def _literal_chars(op: Any, av: Any) -> list[str] | None:
    """The lower-case characters one item can be, when it is a literal or a small class."""
    if op is sre_constants.LITERAL:
        return [chr(av).lower()]
    if (
        op is sre_constants.IN
        and len(av) <= _MAX_CLASS
        and all(o is sre_constants.LITERAL for o, _ in av)
    ):
        return sorted({chr(c).lower() for _, c in av})
    return None


def _item_literals(op: Any, av: Any) -> set[str] | None:
    if op is sre_constants.SUBPATTERN:
        return _seq_literals(list(av[-1]))
    if op is sre_constants.BRANCH:
        union: set[str] = set()
        for alternative in av[1]:
            sub = _seq_literals(list(alternative))
            if sub is None:
                return None
            union |= sub
        return union
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT) and av[0] >= 1:
        return _seq_literals(list(av[2]))
    return None


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression for many words, factored as a trie: Python's engine rejects an
    alternative on its first literal character cheaply, so each position costs a few checks
    instead of one per word."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        optional = "" in node
        if len(branches) == 1 and not optional:
            return branches[0]
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if optional else body

    return emit(trie)


class _LiteralFinder:
    """Finds which of many alphanumeric words occur in a text.

    The text is cut into alphanumeric tokens; which words each token contains is worked out once
    (a trie-shaped regular expression over the token) and remembered, since tokens such as
    "recipient" or "rejected" recur in every log, and only new tokens (ids, addresses) are
    scanned.
    """

    #: Tokens remembered per finder; past this, new tokens are scanned but not kept.
    MAX_TOKENS = 50_000

    def __init__(self, words: Iterable[str], by_word: dict[str, frozenset[int]]) -> None:
        ordered = sorted(set(words))
        # A lookahead at every position reports the longest word starting there (the trie is
        # greedy); the shorter words that are its prefixes start there too.
        self.prefixes = {w: frozenset(p for p in ordered if w.startswith(p)) for w in ordered}
        self.regex = re.compile(f"(?=({_trie_pattern(ordered)}))") if ordered else None
        self.by_word = by_word
        #: token -> (the words it contains, the rules those words index)
        self.tokens: dict[str, tuple[frozenset[str], frozenset[int]]] = {}

    def _scan(self, token: str) -> tuple[frozenset[str], frozenset[int]]:
        found: set[str] = set()
        if self.regex is not None:
            for word in self.regex.findall(token):
                if word:
                    found |= self.prefixes[word]
        rules: set[int] = set()
        for word in found:
            rules |= self.by_word.get(word, frozenset())
        return frozenset(found), frozenset(rules)

    def present(self, lowered: str) -> tuple[set[str], set[int]]:
        """The words present in the text, and the rules they index."""
        found: set[str] = set()
        rules: set[int] = set()
        tokens = self.tokens
        for token in set(_TOKEN_RE.findall(lowered)):
            hit = tokens.get(token)
            if hit is None:
                hit = self._scan(token)
                if len(tokens) < self.MAX_TOKENS:
                    tokens[token] = hit
            if hit[0]:
                found |= hit[0]
                rules |= hit[1]
        return found, rules


class _Bucket:
    """The rules that can match one (code, status, class, command) combination, in order.

    Rules with a text condition come first; the list ends at the first rule without one, since
    nothing after it can win.
    """

    __slots__ = ("always", "by_word", "clauses", "finder", "terminal", "text_rules")

    def __init__(self, text_rules: tuple[Rule, ...], terminal: Rule | None) -> None:
        self.text_rules = text_rules
        self.terminal = terminal
        self.clauses = tuple(_clauses_of(rule) for rule in text_rules)
        #: Rules without a derivable prefilter are always tried.
        self.always: frozenset[int] = frozenset(
            i for i, clauses in enumerate(self.clauses) if clauses is None
        )
        by_word: dict[str, set[int]] = {}
        words: set[str] = set()
        for i, clauses in enumerate(self.clauses):
            for conjunction in clauses or ():
                for word in conjunction[0][0]:
                    by_word.setdefault(word, set()).add(i)
                for chunks, _ in conjunction:
                    words |= chunks
        self.by_word = {w: frozenset(ix) for w, ix in by_word.items()}
        self.finder = _LiteralFinder(words, self.by_word)

    def first_match(self, text: str) -> Rule | None:
        if not self.text_rules:
            return self.terminal
        if not text.isascii():
            # Case-insensitive patterns fold some non-ASCII letters to ASCII ones (the long s
            # to "s") where str.lower() does not: no prefilter, every rule is tried in order.
            for rule in self.text_rules:
                assert rule.regex is not None
                if rule.regex.search(text):
                    return rule
            return self.terminal
        lowered = text.lower()
        present, candidates = self.finder.present(lowered)
        if self.always:
            candidates |= self.always
        for i in sorted(candidates):
            clauses = self.clauses[i]
            if clauses is not None and not _clauses_hold(clauses, present, lowered):
                continue
            regex = self.text_rules[i].regex
            assert regex is not None
            if regex.search(text):
                return self.text_rules[i]
        return self.terminal


def _clauses_hold(clauses: Clauses, present: set[str], lowered: str) -> bool:
    """Some alternative has every word set touched: first by token chunks, then by the exact
    literals (substring checks are cheap next to running a pattern that fails)."""
    for conjunction in clauses:
        for chunks, literals in conjunction:
            if chunks.isdisjoint(present) or not any(lit in lowered for lit in literals):
                break
        else:
            return True
    return False


@functools.cache
def _clauses_cached(pattern: str) -> Clauses | None:
    return required_clauses(pattern)


def _clauses_of(rule: Rule) -> Clauses | None:
    return _clauses_cached(rule.text) if rule.text is not None else None


class _Matcher:
    """A policy compiled for fast classification, with its own LRU of verdicts."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.buckets: dict[tuple[int | None, StatusCode | None, int, str | None], _Bucket] = {}
        #: Verdicts are few (one per rule, class and hint): each is made once and shared.
        self.verdicts: dict[tuple[str, int, bool, timedelta | None], Verdict] = {}
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
        # The text-level cache already remembers repeats; the key-level one would only add work.
        return self._classify(reply.code, reply.status, reply.text, reply.command)

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
        key = (rule.id, klass, inconsistent, retry_after)
        found = self.verdicts.get(key)
        if found is not None:
            return found
        verdict = self.verdicts[key] = Verdict(
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
        return verdict


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
#: The shipped policy's matcher, kept at hand: most calls use it.
_DEFAULT: _Matcher | None = None


def _matcher(policy: Policy | None) -> _Matcher:
    global _DEFAULT
    if policy is None:
        if _DEFAULT is None:
            _DEFAULT = _matcher(default_policy())
        return _DEFAULT
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
    matcher = _DEFAULT if policy is None and _DEFAULT is not None else _matcher(policy)
    result = matcher.cached_text(text)
    if result.__class__ is Verdict:
        return result
    assert isinstance(result, ReplyParseError)
    raise ReplyParseError(result.text, result.problem)


def cache_clear() -> None:
    """Forget every remembered verdict and token (for benchmarks and tests); the compiled rule
    index is kept, as it belongs to the policy, not to the replies seen."""
    for matcher in list(_MATCHERS.values()):
        matcher.cached.cache_clear()
        matcher.cached_text.cache_clear()
        for bucket in matcher.buckets.values():
            bucket.finder.tokens.clear()
