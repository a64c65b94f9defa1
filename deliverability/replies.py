"""SMTP replies: the basic reply code, the RFC 3463 enhanced status code, the text, the command.

`parse_reply` reads a reply from anything a mailer or an MTA records: a single line, a multi-line
reply (RFC 5321 section 4.2: ``550-`` continuation lines), a Postfix ``said:`` fragment, a DSN
``Diagnostic-Code: smtp; ...`` value, an Exim ``SMTP error from remote mail server after ...`` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deliverability.errors import ReplyParseError, not_unicode

__all__ = ["Reply", "StatusCode", "parse_reply", "parse_status"]

# RFC 3463 section 3.1: class is 2, 4 or 5; subject 0-7 in the registry (we accept up to 999 per
# the grammar, then range-check); detail 0-999. A detail of 4 or more digits is still read as a
# status token, so that it is range-checked and reported rather than left in the text; the
# possessive ``\d++`` keeps a long run of digits from being retried digit by digit.
_STATUS_RE = re.compile(r"(?<![\d.])#?([245])\.(\d{1,3})\.(\d++)(?![\d.]*\d)")
_ANY_STATUS_RE = re.compile(r"(?<![\d.])#?(\d)\.(\d{1,3})\.(\d++)(?![\d.]*\d)")

# A basic reply code at the start of a line (RFC 5321 section 4.2), with the separator that tells a
# continuation line ("-") from the last line (" " or end). Real MTAs also write "#550" (Exchange)
# and "550:" in places, which we accept.
_LEAD_RE = re.compile(r"^#?([1-5]\d\d)(?:[ \t]*[-:]?[ \t]*|$)")

# DSN field (RFC 3464 section 2.3.6): "Diagnostic-Code: smtp; 550 ..." (also "X-Postfix;").
_DSN_PREFIX_RE = re.compile(
    r"^\s*(?:diagnostic-code\s*:\s*)?(?:smtp|x-postfix|x-unix|x-local|mail|x-exim|x-qmail)?\s*;\s*",
    re.I,
)
_DIAG_FIELD_RE = re.compile(r"^\s*diagnostic-code\s*:\s*", re.I)

# Prefixes that recorders put before a reply. Order matters: the longest, most specific first.
_PREFIXES: tuple[re.Pattern[str], ...] = (
    # Postfix: "host mx.example.com[192.0.2.1] said: 550 ..."; also "... refused to talk to me:".
    re.compile(r"^.*?\bsaid\s*:\s*", re.I | re.S),
    re.compile(r"^.*?\brefused to talk to me\s*:\s*", re.I | re.S),
    # Exim: "SMTP error from remote mail server after RCPT TO:<a@b>: host mx[1.2.3.4]: 550 ..."
    re.compile(
        r"^.*?SMTP error from remote (?:mail server|mailer) after "
        # ESMTP parameters may follow the address: "after MAIL FROM:<a@b> SIZE=1024:".
        r"(?:[A-Za-z ]+?:\s*<[^>]*>(?:\s+[A-Z][A-Z-]*=\S*?)*|[A-Za-z ]+?)\s*:\s*"
        r"(?:host\s+\S+(?:\s+\[[^\]]*\])?\s*:\s*)?",
        re.I | re.S,
    ),
    # Exim and others log "H=mx.example.com [192.0.2.1]: 550 ...".
    re.compile(r"^\s*H=\S+(?:\s+\[[^\]]*\])?\s*:\s*"),
    # "Remote server returned '550 5.1.1 ...'" (Exchange) and "remote server replied: 550 ...".
    re.compile(r"^.*?\bremote server (?:returned|replied|said)\s*:?\s*['\"]?", re.I | re.S),
)

# "(in reply to RCPT TO command)" is how Postfix names the command a reply answered.
_IN_REPLY_TO_RE = re.compile(r"\(in reply to ([A-Za-z ]+?)(?: command)?\)", re.I)
# Exim: "after RCPT TO:<...>", "after MAIL FROM:<...>", "after end of data", "after DATA".
_AFTER_RE = re.compile(
    r"\bafter (RCPT TO|MAIL FROM|end of data|DATA|EHLO|HELO|STARTTLS|AUTH|initial connection)\b",
    re.I,
)
_COMMANDS = {
    "rcpt to": "RCPT TO",
    "mail from": "MAIL FROM",
    "end of data": "DATA",
    "end of data command": "DATA",
    "data": "DATA",
    "ehlo": "EHLO",
    "helo": "HELO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
    "initial connection": "CONNECT",
    "connect": "CONNECT",
    "quit": "QUIT",
    "rset": "RSET",
    "bdat": "DATA",
}

_WS_RE = re.compile(r"\s+")
_MAX_TEXT = 10_000  # no real reply is longer; longer input is cut, not refused


@dataclass(frozen=True, slots=True, order=True)
class StatusCode:
    """An RFC 3463 enhanced status code: class.subject.detail."""

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"

    @property
    def is_transient(self) -> bool:
        return self.klass == 4

    @property
    def is_permanent(self) -> bool:
        return self.klass == 5

    @property
    def is_success(self) -> bool:
        return self.klass == 2

    @property
    def wildcard(self) -> str:
        """The same code with the class as ``X`` (``X.1.1``), as the IANA registry lists them."""
        return f"X.{self.subject}.{self.detail}"


def parse_status(text: str) -> StatusCode:
    """Parse and range-check an enhanced status code such as ``5.1.1``.

    Raises ReplyParseError when the text is not one, or is out of the ranges RFC 3463 section 3.1
    allows (class 2, 4 or 5; subject 0 to 7; detail 0 to 999).
    """
    m = re.fullmatch(r"\s*#?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\s*", text)
    if not m:
        raise ReplyParseError(text, "not an enhanced status code (expected class.subject.detail)")
    klass, subject, detail = (int(g) for g in m.groups())
    problem = _status_range_problem(klass, subject, detail)
    if problem:
        raise ReplyParseError(text, problem)
    return StatusCode(klass, subject, detail)


def _status_range_problem(klass: int, subject: int, detail: int) -> str | None:
    if klass not in (2, 4, 5):
        return f"enhanced status class {klass} is not 2, 4 or 5 (RFC 3463 section 3.1)"
    if subject > 7:
        return f"enhanced status subject {subject} is not 0 to 7 (RFC 3463 section 3.1)"
    if detail > 999:
        return f"enhanced status detail {detail} is over 999 (RFC 3463 section 3.1)"
    return None


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply as a mailer recorded it.

    `code` is the basic reply code (RFC 5321 section 4.2), `status` the enhanced status code
    (RFC 3463); either may be absent, not both. `text` is the human-readable part, with multi-line
    replies joined by single spaces. `command` is the SMTP command it answered, when known.
    `problems` lists what the parser noticed but did not trust (an enhanced code out of range, or
    one whose class disagrees with the basic code).
    """

    code: int | None
    status: StatusCode | None
    text: str = ""
    command: str | None = None
    problems: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.code is None and self.status is None:
            raise ReplyParseError(self.text, "a reply needs a basic code or an enhanced status")
        if self.code is not None and not 100 <= self.code <= 599:
            raise ReplyParseError(str(self.code), "basic reply code out of range 100-599")

    @property
    def klass(self) -> int:
        """The class digit that decides retry vs stop: the basic code's, else the status's."""
        if self.code is not None:
            return self.code // 100
        assert self.status is not None
        return self.status.klass

    @property
    def inconsistent(self) -> bool:
        """True when the enhanced status's class disagrees with the basic code's class.

        RFC 3463 section 3.1 requires them to agree; when they do not, neither is trusted blindly.
        """
        return (
            self.code is not None
            and self.status is not None
            and self.code // 100 in (2, 4, 5)
            and self.status.klass != self.code // 100
        )

    @property
    def is_transient(self) -> bool:
        return self.klass == 4

    @property
    def is_permanent(self) -> bool:
        return self.klass == 5

    def __str__(self) -> str:
        parts = [str(p) for p in (self.code, self.status) if p is not None]
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def _strip_prefixes(text: str) -> str:
    text = _DIAG_FIELD_RE.sub("", text, count=1)
    text = _DSN_PREFIX_RE.sub("", text, count=1)
    # Apply prefix rules repeatedly: "Diagnostic-Code: smtp; host x said: 550 ..." has three.
    for _ in range(4):
        before = text
        for rx in _PREFIXES:
            m = rx.match(text)
            # A prefix only counts when something that could be a reply follows it.
            if m and re.match(r"\s*#?\d", text[m.end() :]):
                text = text[m.end() :]
        if text == before:
            break
    return text


def _command_of(text: str) -> tuple[str, str | None]:
    """Pull the SMTP command out of "(in reply to X command)" or Exim's "after X"."""
    command: str | None = None
    m = _IN_REPLY_TO_RE.search(text)
    if m:
        command = _COMMANDS.get(m.group(1).strip().lower(), m.group(1).strip().upper())
        text = (text[: m.start()] + text[m.end() :]).strip()
    else:
        m = _AFTER_RE.search(text)
        if m:
            command = _COMMANDS.get(m.group(1).lower(), m.group(1).upper())
    return text, command


# The plain shape most log lines have: "550 5.1.1 text" on one line, nothing before the code. The
# status part is optional here; when it is absent but a digit follows the code, the line is odd
# and goes to the full parser.
_SIMPLE_RE = re.compile(r"([1-5]\d\d)(?: *[-:]? *|$)(?:([245]\.\d{1,3}\.\d{1,3})(?: +|$))?")
# Words that send a line to the full parser: prefixes a recorder puts before the reply, and the
# command markers ("(in reply to ...)", Exim's "after ...").
_SLOW_MARKERS = ("said", "refused to talk", "smtp error", "remote server", "in reply to", "after")
# Enhanced status codes seen by the fast path, made once each: a log holds few distinct ones.
_STATUSES: dict[str, StatusCode | None] = {}
_MAX_STATUSES = 4_096


def _simple_status(token: str) -> StatusCode | None:
    """The status of a "class.subject.detail" token, or None when its subject is out of range."""
    found = _STATUSES.get(token, False)
    if found is False:
        klass, subject, detail = (int(part) for part in token.split("."))
        found = StatusCode(klass, subject, detail) if subject <= 7 else None
        if len(_STATUSES) < _MAX_STATUSES:
            _STATUSES[token] = found
    return found  # type: ignore[return-value]


def _parse_simple(text: str) -> Reply | None:
    """The fast path for a plain one-line reply, or None when the full parser must read it.

    It gives exactly what `_parse_full` gives for the lines it accepts (tests compare the two);
    anything unusual (several lines, control characters, prefixes, a repeated code, an odd
    status) goes to the full parser.
    """
    parts = simple_parts(text)
    if parts is None:
        return None
    code, status, body, problems = parts
    return Reply(code=code, status=status, text=body, command=None, problems=problems)


def simple_parts(text: str) -> tuple[int, StatusCode | None, str, tuple[str, ...]] | None:
    """What `_parse_simple` reads, as (code, status, text, problems), without making the Reply:
    the classifier's text path needs only the parts."""
    text = text.strip()
    if len(text) > _MAX_TEXT or not text[:1].isdigit() or not text.isprintable():
        return None
    lowered = text.lower()
    for marker in _SLOW_MARKERS:
        if marker in lowered:
            return None
    m = _SIMPLE_RE.match(text)
    if m is None:
        return None
    code = int(m.group(1))
    token = m.group(2)
    rest = text[m.end() :]
    status: StatusCode | None = None
    if token is not None:
        status = _simple_status(token)
        if status is None:
            return None
    elif rest[:1].isdigit() or rest[:1] == "#":
        return None
    # A printable text holds no whitespace but the space, and `rest` starts after the spaces
    # that follow the code and status and ends at the stripped end: only doubled spaces remain.
    body = " ".join(rest.split()) if "  " in rest or rest[:1] == " " else rest
    if str(code) in body:
        return None  # possibly repeated continuation prefixes: the full parser drops them
    problems: tuple[str, ...] = ()
    if status is not None and status.klass != code // 100 and code >= 200:
        problems = (f"enhanced status {status} disagrees with reply code {code} (RFC 3463 3.1)",)
    return code, status, body, problems


def parse_reply(text: str) -> Reply:
    """Read one SMTP reply from what a mailer or an MTA recorded.

    Never raises anything but ReplyParseError (a ValueError), whose message names the text and the
    problem: the text is empty, or holds neither a basic reply code nor an enhanced status code.
    """
    if isinstance(text, str):
        problem = not_unicode("the reply", text)
        if problem is not None:
            raise ReplyParseError(text, problem)
        simple = _parse_simple(text)
        if simple is not None:
            return simple
    return _parse_full(text)


def _parse_full(text: str) -> Reply:
    """The general parser: prefixes, several lines, commands, codes inside the text."""
    if not isinstance(text, str):
        raise ReplyParseError(repr(text), f"expected a string, got {type(text).__name__}")
    original = text
    if "\x00" in text:
        text = text.replace("\x00", " ")
    text = text.strip()
    if not text:
        raise ReplyParseError(original, "the reply is empty")
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT]

    text, command = _command_of(text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines[0] = _strip_prefixes(lines[0])
    code, status, pieces, problems = _read_lines(lines)

    if code is None and status is None:
        # No reply code at a line start: take one that follows a colon or bracket inside the
        # text ("... rejected: 550 5.7.1 ..."), else a lone enhanced status anywhere.
        joined = " ".join(pieces)
        m = re.search(r"(?:^|[:;\]\)>]\s*)#?([2-5]\d\d)[ -]+(#?[245]\.\d{1,3}\.\d++)\b", joined)
        if m:
            code = int(m.group(1))
            status, problem = _checked_status(m.group(2))
            problems += [problem] if problem else []
            before, after = joined[: m.start()].strip(" :;"), joined[m.end() :].strip()
            joined = f"{before}: {after}" if before and after else before or after
        else:
            m2 = _STATUS_RE.search(joined)
            if m2:
                status, problem = _checked_status(m2.group(0))
                problems += [problem] if problem else []
        pieces = [joined]

    if code is None and status is None:
        if problems:
            # Only an out-of-range status was found: name the range it breaks.
            raise ReplyParseError(original, problems[0])
        raise ReplyParseError(original, "no SMTP reply code or enhanced status code found")

    body = _WS_RE.sub(" ", " ".join(pieces)).strip()
    body = _drop_repeated_prefixes(body, code, status)
    problems_t = tuple(problems)
    if code is not None and status is not None and status.klass != code // 100 and code >= 200:
        problems_t += (f"enhanced status {status} disagrees with reply code {code} (RFC 3463 3.1)",)
    return Reply(code=code, status=status, text=body, command=command, problems=problems_t)


def _checked_status(token: str) -> tuple[StatusCode | None, str | None]:
    m = _ANY_STATUS_RE.search(token)
    if not m:
        return None, None
    klass, subject, detail = (int(g) for g in m.groups())
    problem = _status_range_problem(klass, subject, detail)
    if problem:
        return None, f"ignored enhanced status {klass}.{subject}.{detail}: {problem}"
    return StatusCode(klass, subject, detail), None


def _read_lines(
    lines: list[str],
) -> tuple[int | None, StatusCode | None, list[str], list[str]]:
    """Read the code, status and text pieces of a (possibly multi-line) reply."""
    code: int | None = None
    status: StatusCode | None = None
    pieces: list[str] = []
    problems: list[str] = []
    for i, line in enumerate(lines):
        m = _LEAD_RE.match(line)
        if m and (code is None or int(m.group(1)) == code) and (i == 0 or code is not None):
            code = int(m.group(1))
            line = line[m.end() :]
        elif m and code is not None:
            # RFC 5321 section 4.2.1: every line of a multi-line reply carries the same code. The
            # first line's code is kept; the other is named, not trusted, and not left in the text.
            other = int(m.group(1))
            problems.append(
                f"line {i + 1} of the reply has code {other}, the first line {code}"
                " (RFC 5321 section 4.2.1: one code on every line)"
            )
            line = line[m.end() :]
        elif i == 0 and not m:
            # A reply that starts with its enhanced status ("5.1.1 User unknown").
            ms = _ANY_STATUS_RE.match(line.lstrip("#"))
            if ms and line.lstrip("#")[: ms.end()].count(".") == 2:
                st, problem = _checked_status(ms.group(0))
                if st is not None or problem:
                    status = st
                    if problem:
                        problems.append(problem)
                    line = line.lstrip("#")[ms.end() :]
        if code is not None or status is not None:
            ms = _ANY_STATUS_RE.match(line.strip())
            if ms:
                st, problem = _checked_status(ms.group(0))
                if status is None:
                    status = st
                if problem and problem not in problems:
                    problems.append(problem)
                line = line.strip()[ms.end() :]
        pieces.append(line.strip())
    return code, status, pieces, problems


def _drop_repeated_prefixes(body: str, code: int | None, status: StatusCode | None) -> str:
    """Remove continuation prefixes that a log flattened into one line.

    Gmail's multi-line replies often reach logs as ``550-5.1.1 The email account ... 550-5.1.1
    double-checking ... 550 5.1.1 https://...``; the repeated ``550-5.1.1`` pieces are noise.
    """
    if code is None:
        return body
    pattern = rf"(?:(?<=\s)|^)#?{code}[ -]"
    if status is not None:
        pattern += rf"(?:{re.escape(str(status))}\s)?"
    return _WS_RE.sub(" ", re.sub(pattern, " ", body)).strip()
