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
  the basic code's class (``5.2.2``); a status out of range (``5.9.1``) is not used at all, and
  the verdict is flagged too. An inconsistent verdict is decisive only by its text: the status
  alone contradicts itself.
"""

from __future__ import annotations

import functools
import operator
import re
import weakref
from collections.abc import Iterable
from datetime import timedelta
from re import _compiler as sre_compiler  # type: ignore[attr-defined]
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

from deliverability.errors import ReplyParseError
from deliverability.policy import Policy, Rule, default_policy
from deliverability.replies import Reply, StatusCode, parse_reply, simple_parts
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


# Every hint holds one of these words; an ASCII text without any of them has no hint, and the
# substring checks cost far less than the case-insensitive searches.
_HINT_WORDS = ("try", "again", "come back", "resend", "wait", "deferred for")


def retry_hint(text: str) -> timedelta | None:
    """The wait a reply's text asks for ("try again in 300 seconds"), or None."""
    if text.isascii():
        lowered = text.lower()
        for word in _HINT_WORDS:
            if word in lowered:
                break
        else:
            return None
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


#: One required word set: the letter chunks the token scan looks for, and the exact
#: lower-case literals they come from (one of which must be a substring of the text). The
#: chunks are empty for literals without a run of letters long enough to look for ("[bl21]"):
#: those are only checked as substrings.
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
            # The scan works on runs of letters: a literal occurs only where its longest run of
            # letters occurs inside a run of letters of the text, a weaker condition that stays
            # sound. Letters only, because the digits of a log line are mostly ids, addresses and
            # times that would make nearly every token new.
            chunks = frozenset(_longest_chunk(w) for w in candidate)
            if all(len(c) >= _MIN_LITERAL for c in chunks):
                sets.append((chunks, frozenset(candidate)))
            elif all(len(w) >= _MIN_LITERAL for w in candidate):
                sets.append((frozenset(), frozenset(candidate)))
        if not sets:
            return None
        # The most selective first: the bucket indexes a rule by its first set's words.
        sets.sort(
            key=lambda ws: (
                -min((len(w) for w in ws[0]), default=0),
                len(ws[0]),
                -min(len(w) for w in ws[1]),
                sorted(ws[1]),
            )
        )
        clauses.append(tuple(sets))
    return tuple(clauses)


_CHUNK_RE = re.compile(r"[a-z]+")
# Tokens shorter than the shortest prefilter word cannot contain one.
_TOKEN_RE = re.compile(rf"[a-z]{{{_MIN_LITERAL},}}")


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
    """The lower-case characters one item can be, when it is a literal or a small class.

    ASCII only: under IGNORECASE some other letters match ASCII ones (the long s matches "s"),
    so they are no literal an ASCII reply must contain.
    """
    if op is sre_constants.LITERAL:
        return [chr(av).lower()] if av <= _ASCII_MAX else None
    if (
        op is sre_constants.IN
        and len(av) <= _MAX_CLASS
        and all(o is sre_constants.LITERAL and c <= _ASCII_MAX for o, c in av)
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


# --------------------------------------------------------------------------------------------
# Case-insensitive patterns, run as case-sensitive ones on the lower-cased text. Python's engine
# cannot skip ahead to the possible first characters of a case-insensitive pattern, so it tries
# the whole pattern at every position; the same pattern with its letters lower-cased, without
# IGNORECASE, run over the lower-cased text, lets the engine skip to the positions where a match
# can start. For an ASCII text and a pattern whose literals are ASCII the two agree: a letter
# matches under IGNORECASE exactly when its lower-case form equals the pattern letter's (tested
# against the original on random texts).
# --------------------------------------------------------------------------------------------

_IGNORECASE = sre_constants.SRE_FLAG_IGNORECASE
_ASCII_MAX = 0x7F


def _lower_char(c: int) -> int:
    return c + 32 if 0x41 <= c <= 0x5A else c


def _lower_items(items: Any) -> bool:
    """Lower-case, in place, a parsed sequence; False when it holds something this cannot
    translate (non-ASCII literals, scoped flags, an unknown operator)."""
    c = sre_constants
    for index, (op, av) in enumerate(items):
        if op in (c.LITERAL, c.NOT_LITERAL):
            if av > _ASCII_MAX:
                return False
            items[index] = (op, _lower_char(av))
        elif op is c.IN:
            members: list[tuple[Any, Any]] = []
            for member_op, member in av:
                if member_op is c.LITERAL:
                    if member > _ASCII_MAX:
                        return False
                    members.append((member_op, _lower_char(member)))
                elif member_op is c.RANGE:
                    low, high = member
                    if high > _ASCII_MAX:
                        return False
                    members.append((member_op, member))
                    # The lower-case images of the capital letters in the range.
                    upper_low, upper_high = max(low, 0x41), min(high, 0x5A)
                    if upper_low <= upper_high:
                        members.append((c.RANGE, (upper_low + 32, upper_high + 32)))
                elif member_op in (c.NEGATE, c.CATEGORY):
                    members.append((member_op, member))
                else:
                    return False
            items[index] = (op, members)
        elif op in (c.ANY, c.AT, c.GROUPREF):
            continue
        elif op is c.BRANCH:
            if not all(_lower_items(alternative) for alternative in av[1]):
                return False
        elif op is c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if (add_flags | del_flags) & ~sre_constants.SRE_FLAG_UNICODE:
                return False
            if not _lower_items(sub):
                return False
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            if not _lower_items(av[2]):
                return False
        elif op in (c.ASSERT, c.ASSERT_NOT):
            if not _lower_items(av[1]):
                return False
        elif op is c.ATOMIC_GROUP:
            if not _lower_items(av):
                return False
        elif op is c.GROUPREF_EXISTS:
            if not _lower_items(av[1]) or (av[2] is not None and not _lower_items(av[2])):
                return False
        else:
            return False
    return True


def lowered_regex(pattern: str) -> re.Pattern[str] | None:
    """`pattern`, when case-insensitive, as a case-sensitive pattern that finds the same matches
    in the lower-cased form of any ASCII text; None when it is case-sensitive or cannot be
    translated (then the original runs on the original text)."""
    try:
        parsed = sre_parser.parse(pattern)
        flags = parsed.state.flags
        if not flags & _IGNORECASE or flags & ~(_IGNORECASE | sre_constants.SRE_FLAG_UNICODE):
            return None
        if not _lower_items(parsed.data):
            return None
        parsed.state.flags = flags & ~_IGNORECASE
        compiled: re.Pattern[str] = sre_compiler.compile(parsed, 0)
        return compiled
    except Exception:  # an internal parser and compiler: any surprise means "no translation"
        return None


#: One alternative of a rule's prefilter, as the bucket checks it: for each required word set,
#: the bit mask of its words and the exact literals to look for: one string, one pattern for
#: several, or None when the words are the literals themselves (finding the word already proves
#: the literal is there).
_Check = tuple[tuple[int, "str | re.Pattern[str] | None"], ...]


class _Bucket:
    """The rules that can match one (code, status, class, command) combination, in order.

    Rules with a text condition come first; the list ends at the first rule without one, since
    nothing after it can win.

    The prefilter works on bit masks. Each prefilter word of the bucket has a bit, then one bit
    is always set, then each text rule has a bit (rule i at bit ``nwords + 1 + i``). The
    lower-cased text is cut into tokens (runs of letters), and each token's value (the words it
    contains, and the rules those words index) is worked out once and remembered, since tokens
    such as "recipient" or "rejected" recur in every log and only new tokens (names, ids) need a
    scan. The OR of a text's token values gives, in one integer, the words present and the
    candidate rules, which are then tried in rule order.
    """

    __slots__ = (
        "always",
        "base",
        "checks",
        "gate",
        "gated",
        "lowered",
        "prefix_value",
        "regex",
        "terminal",
        "text_rules",
        "tokens",
        "word_mask",
    )

    #: Tokens remembered per bucket (about 2 MB when full); when full, the memory is emptied and
    #: refilled by what recurs, so names and ids that never come back cannot pile up.
    MAX_TOKENS = 20_000

    def __init__(self, text_rules: tuple[Rule, ...], terminal: Rule | None) -> None:
        self.text_rules = text_rules
        self.terminal = terminal
        clauses = [_clauses_of(rule) for rule in text_rules]
        words = sorted(
            {c for cl in clauses for conj in cl or () for chunks, _ in conj for c in chunks}
        )
        nwords = len(words)
        bit = {w: 1 << i for i, w in enumerate(words)}
        # The bit above the words is always set: a word set checked only by its literals.
        sentinel = 1 << nwords
        base = nwords + 1
        #: word -> its own bit, plus the bits of the rules it indexes (the words of the first,
        #: most selective, word set of each of the rule's alternatives).
        value = dict(bit)
        always = sentinel
        #: Rules with an alternative indexed by no word ("[bl21]"): candidates when one of the
        #: literals of those alternatives occurs, which one search finds out.
        gated = 0
        gate_literals: set[str] = set()
        checks: list[tuple[_Check, ...] | None] = []
        for i, cl in enumerate(clauses):
            rule_bit = 1 << (base + i)
            if cl is None:
                # No derivable prefilter: the rule is always tried.
                always |= rule_bit
                checks.append(None)
                continue
            alternatives = []
            for conjunction in cl:
                for word in conjunction[0][0]:
                    value[word] |= rule_bit
                if not conjunction[0][0]:
                    # Not even the most selective set has words to index.
                    gated |= rule_bit
                    gate_literals |= conjunction[0][1]
                sets = []
                for chunks, literals in conjunction:
                    mask = 0 if chunks else sentinel
                    for c in chunks:
                        mask |= bit[c]
                    exact: str | re.Pattern[str] | None
                    if literals == chunks:
                        exact = None
                    elif len(literals) == 1:
                        exact = next(iter(literals))
                    else:
                        # One search for several literals: a C loop, not a Python one.
                        exact = re.compile("|".join(map(re.escape, sorted(literals))))
                    sets.append((mask, exact))
                alternatives.append(tuple(sets))
            checks.append(tuple(alternatives))
        self.checks = checks
        #: Per rule, its pattern translated to run on the lower-cased text, or None.
        self.lowered = [_lowered_cached(rule.text) if rule.text else None for rule in text_rules]
        self.base = base
        self.word_mask = (1 << base) - 1
        self.always = always
        self.gated = gated
        # Case-sensitive, on the lower-cased text: the engine skips to the literals' first
        # characters.
        self.gate = re.compile(_trie_pattern(sorted(gate_literals))) if gate_literals else None
        # A lookahead at every position reports the longest word starting there (the trie is
        # greedy); the shorter words that are its prefixes start there too.
        self.prefix_value: dict[str, int] = {}
        for w in words:
            v = 0
            for p in words:
                if w.startswith(p):
                    v |= value[p]
            self.prefix_value[w] = v
        self.regex = re.compile(f"(?=({_trie_pattern(words)}))") if words else None
        #: token -> the OR of the values of the words it contains (0 for none)
        self.tokens: dict[str, int] = {}

    def _scan(self, token: str) -> int:
        v = 0
        if self.regex is not None:
            prefix_value = self.prefix_value
            for word in self.regex.findall(token):
                if word:
                    v |= prefix_value[word]
        tokens = self.tokens
        if len(tokens) >= self.MAX_TOKENS:
            tokens.clear()
        tokens[token] = v
        return v

    def present(self, lowered: str) -> int:
        """The OR of the values of the text's tokens: present words and candidate rules."""
        found = _TOKEN_RE.findall(lowered)
        values = list(map(self.tokens.get, found))
        if None in values:
            scan = self._scan
            values = [scan(t) if v is None else v for t, v in zip(found, values, strict=True)]
        return functools.reduce(operator.or_, values, self.always)

    def first_match(self, text: str) -> Rule | None:
        text_rules = self.text_rules
        if not text_rules:
            return self.terminal
        if not text.isascii():
            # Case-insensitive patterns fold some non-ASCII letters to ASCII ones (the long s
            # to "s") where str.lower() does not: no prefilter, every rule is tried in order.
            for rule in text_rules:
                assert rule.regex is not None
                if rule.regex.search(text):
                    return rule
            return self.terminal
        lowered = text.lower()
        combined = self.present(lowered)
        if self.gate is not None and self.gate.search(lowered) is not None:
            combined |= self.gated
        present = combined & self.word_mask
        candidates = combined >> self.base
        checks = self.checks
        lowered_rules = self.lowered
        while candidates:
            low = candidates & -candidates
            candidates ^= low
            i = low.bit_length() - 1
            check = checks[i]
            if check is not None and not _holds(check, present, lowered):
                continue
            fast = lowered_rules[i]
            if fast is not None:
                if fast.search(lowered):
                    return text_rules[i]
                continue
            rule = text_rules[i]
            assert rule.regex is not None
            if rule.regex.search(text):
                return rule
        return self.terminal


def _holds(check: tuple[_Check, ...], present: int, lowered: str) -> bool:
    """Some alternative has every word set touched: first by its word bits, then by the exact
    literals (substring checks are cheap next to running a pattern that fails)."""
    for alternative in check:
        for mask, exact in alternative:
            if not present & mask:
                break
            if exact is None:
                continue
            if isinstance(exact, str):
                if exact not in lowered:
                    break
            elif exact.search(lowered) is None:
                break
        else:
            return True
    return False


@functools.cache
def _clauses_cached(pattern: str) -> Clauses | None:
    return required_clauses(pattern)


@functools.cache
def _lowered_cached(pattern: str) -> re.Pattern[str] | None:
    return lowered_regex(pattern)


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
        self,
        code: int | None,
        status: StatusCode | None,
        text: str,
        command: str | None,
        flawed: bool = False,
    ) -> Verdict:
        # `flawed`: the parser set aside something it did not trust (a status out of range).
        inconsistent = flawed
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
        # Most log lines are plain "550 5.1.1 text": read them without making a Reply.
        parts = simple_parts(text) if text.__class__ is str else None
        if parts is not None:
            return self._classify(parts[0], parts[1], parts[2], None, bool(parts[3]))
        try:
            reply = parse_reply(text)
        except ReplyParseError as exc:
            return exc
        # The text-level cache already remembers repeats; the key-level one would only add work.
        return self._classify(
            reply.code, reply.status, reply.text, reply.command, bool(reply.problems)
        )

    def _verdict(self, rule: Rule | None, klass: int, text: str, inconsistent: bool) -> Verdict:
        if rule is None:
            return _fallback(klass, inconsistent)
        outcome = rule.outcome
        # RFC 5321 section 4.2.1: a 4yz reply is transient whatever its text says.
        transient = klass == 4 and outcome in _PERMANENT
        retry_after = rule.retry_after
        if retry_after is None and (transient or outcome is Outcome.DEFERRED):
            retry_after = retry_hint(text)
            if retry_after is None and rule.reason is Reason.GREYLISTED:
                retry_after = self.policy.backoff.greylist_retry
        if retry_after is not None:
            retry_after = min(retry_after, self.policy.backoff.max_hint)
        key = (rule.id, klass, inconsistent, retry_after)
        found = self.verdicts.get(key)
        if found is not None:
            return found
        decisive, why = rule.decisive, rule.why
        if transient:
            outcome, decisive = Outcome.DEFERRED, False
            why = f"{why} (a 4xx reply is transient: retried, not final)".strip()
        verdict = self.verdicts[key] = Verdict(
            outcome=outcome,
            reason=rule.reason,
            fault=rule.fault,
            rule=rule.id,
            # An inconsistent status is no decisive evidence on its own; a decisive text is.
            decisive=decisive
            and outcome is Outcome.BOUNCED
            and not (inconsistent and rule.text is None),
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
    return _matcher(policy).cached(
        reply.code, reply.status, reply.text, reply.command, bool(reply.problems)
    )


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
            bucket.tokens.clear()
