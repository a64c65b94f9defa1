"""Non-standard bounce bodies: qmail, Exim, old Sendmail, Exchange, Gmail, Yahoo, and the rest.

These mail systems explain a failure in prose. Each format is recognised by a phrase its bodies
carry (the table `FORMATS`), and all are read the same way: find the lines that name a failed
recipient, and take the SMTP reply that follows each one. The recipient patterns are ordered from
the most specific (an address alone on its line, as qmail, Exim and Gmail write it) to the least.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deliverability.ingest.bounce.base import (
    ADDRESS_RE,
    EAI_ADDRESS_RE,
    Hit,
    address_re,
    addresses_in,
    reply_in,
)
from deliverability.ingest.bounce.mime import Parsed, decode_header

__all__ = ["FORMATS", "TextFormat"]

_A = ADDRESS_RE.pattern


def _recipient_lines(address: str) -> tuple[tuple[re.Pattern[str], bool], ...]:
    """Lines that name a failed recipient, most specific first; `address` is the address pattern
    (ASCII, or RFC 6531). Each has one group: the address.

    A pattern paired with True is matched against "\n" + text, its leading "\n" standing for a
    line start: a pattern that starts with a line break is found by a fast scan for that
    character, where "^" in MULTILINE mode is tried at every position. A match then starts
    where its line starts in the text.
    """
    return (
        # An address at the start of its line: alone (qmail, Yahoo, Courier "<a@b>:"; Exim, Gmail
        # "  a@b"), or followed by Exchange 2003's "on <date>", Exim's "(generated from c@d)",
        # "a@b: 550 ...", Sendmail's transcript "554 <a@b>... User unknown".
        (
            re.compile(
                rf"(?m)\n[ \t]*(?:[-*>]+[ \t]*)?"
                rf"(?:[245]\d\d(?:[ -][245]\.\d{{1,3}}\.\d{{1,3}})?[ \t]+)?[<\"]?{address}[>\"]?"
                rf"(?:[ \t]*:?[ \t]*$|[ \t]+on[ \t]|[ \t]*\((?:generated|expanded|ultimately)|"
                rf":[ \t]+\S|\.\.\.[ \t]*\S|[ \t]*\[)"
            ),
            True,
        ),
        # Labelled: "Recipient: a@b", "Original-Recipient: rfc822;a@b", "To: a@b",
        # "Failed address:".
        (
            re.compile(
                rf"(?i)\n[ \t]*(?:[\w -]{{0,30}}recipient(?:\(s\))?s?|to|address(?:es)?|rcpt|"
                rf"destinataire|destinatario|empf[äa]nger|invalid|unknown|failed)[ \t]*"
                rf"(?:address)?[ \t]*[:=][ \t]*(?:rfc822;)?[ \t]*\"?[^<\n@]*?<?{address}"
            ),
            True,
        ),
        # "The following recipients returned permanent errors: a@b", "Delivery failed: a@b",
        # "Unknown user: a@b": a short label, a colon, the address.
        (
            re.compile(
                rf"(?mi)(?:^[ \t]*[\w ,'()-]{{0,40}}|recipients?[^\n:]{{0,60}}):[ \t]*<?{address}>?"
            ),
            False,
        ),
        # In a sentence: "delivering your mail to <a@b>", "message to <a@b> could not",
        # "RCPT TO:<a@b>".
        # The lookaheads let the engine pass, cheaply, every position no keyword starts at.
        (
            re.compile(
                rf"(?i)(?=[dsmru])"
                rf"(?:deliver(?:ed|ing|y)?|sent|send|mail(?:ed)?|message|rcpt|undeliverable)\s+"
                rf"(?:(?:your|the|this)\s+)?(?:(?:e-?)?mail\s+|message\s+)?(?:to|for)\s*:?\s*"
                rf"['\"]?<?{address}"
            ),
            False,
        ),
        (
            re.compile(rf"(?i)(?=[ramu])(?:recipient|address|user|mailbox)\s+['\"]?<?{address}"),
            False,
        ),
        (re.compile(rf"<{address}>"), False),
    )


_RECIPIENT_LINES = _recipient_lines(ADDRESS_RE.pattern)
_EAI_RECIPIENT_LINES = _recipient_lines(EAI_ADDRESS_RE.pattern)


@dataclass(frozen=True)
class TextFormat:
    """One prose bounce format: its name and the phrases (lower case) that identify it."""

    name: str
    phrases: tuple[str, ...]
    #: A pattern that also identifies it, where a phrase cannot.
    pattern: re.Pattern[str] | None = None
    #: The format's own recipient pattern (one group: the address), tried first.
    recipient: re.Pattern[str] | None = None
    #: Lower-case text that `pattern` cannot match without: a cheap test before the pattern.
    hint: str = ""

    def matches(self, text: str, lower: str) -> bool:
        # Substring tests: a handful of them over a bounce's text are several times cheaper
        # than one alternation of the same phrases (measured in bench/bench_messages.py).
        for phrase in self.phrases:
            if phrase in lower:
                return True
        if self.pattern is None or self.hint not in lower:
            return False
        return self.pattern.search(text) is not None


# Identifying phrases, from the formats' own bodies. The first format that matches names it.
FORMATS: tuple[TextFormat, ...] = (
    TextFormat(
        "qmail",
        ("this is the qmail-send program", "qmail-send"),
        # qmail ends each reason with its enhanced status in parentheses: "(#5.1.1)".
        pattern=re.compile(r"\(#[45]\.\d+\.\d+\)"),
        hint="(#",
    ),
    TextFormat("exim", ("created automatically by mail delivery software",)),
    TextFormat("sendmail", ("transcript of session follows",)),
    TextFormat(
        "exchange",
        (
            "diagnostic information for administrators",
            "did not reach the following recipient",
            "remote server returned",
            "msexch",
            "delivery has failed to these recipients",
        ),
    ),
    TextFormat("gmail", ("delivery to the following recipient", "google tried to deliver")),
    TextFormat("yahoo", ("sorry, we were unable to deliver your message",)),
    TextFormat("dragonfly", ("dragonfly mail agent",)),
    TextFormat("opensmtpd", ("opensmtpd", "your message could not be delivered")),
    TextFormat("postfix", ("this is the mail system at host", "the postfix program")),
    TextFormat("courier", ("courier mail server",)),
    TextFormat(
        "domino",
        ("lotus domino",),
        pattern=re.compile(r"(?i)Your message\s+Subject:.*\s+was not delivered to"),
        hint="was not delivered to",
    ),
    TextFormat("amazonses", ("amazonses", "amazon ses")),
    TextFormat("googlegroups", ("google groups",)),
    # Zoho: "a@b Invalid Address, ERROR_CODE :550, ERROR_CODE :Requested action not taken".
    TextFormat(
        "zoho",
        ("error_code :", "error_code:"),
        recipient=re.compile(rf"(?m)^[ \t]*<?{_A}>?[ \t]+[^\n]*ERROR_CODE"),
    ),
    # fml (a Japanese list manager) refuses posts from non-members, naming the list.
    TextFormat(
        "fml",
        ("you are not a member of this mailing list",),
        recipient=re.compile(rf"(?i)not a member of this mailing list\s+<{_A}>"),
    ),
)
_GENERIC = TextFormat("text", ())

# Words that say a failure is temporary, or final; matched on lower-cased text.
_TRANSIENT_WORDS = (
    "temporar",
    "will continue to try",
    "will continue trying",
    "will keep trying",
    "will keep on trying",
    "will retry",
    "still trying",
    "not yet been delivered",
    "has been delayed",
    "delivery delayed",
    "delivery is delayed",
    "will be retried",
    "retrying later",
    "retry later",
    "warning: message",
)
_PERMANENT_WORDS = ("permanent", "given up", "giving up", "fatal")


def _says_transient(low: str) -> bool:
    return any(w in low for w in _TRANSIENT_WORDS) and not any(w in low for w in _PERMANENT_WORDS)


def _excluded(parsed: Parsed) -> set[str]:
    """Addresses that are never the failed recipient: the bounce's own addresses, and the
    sender of the returned original (it is who the bounce goes back to)."""
    # One scan of each header block for the fields, rather than one lookup per field.
    found = _OWN_FIELDS_RE.findall("\n" + parsed.message.block)
    if parsed.returned is not None:
        found += _SENDER_FIELDS_RE.findall("\n" + parsed.returned.block)
    return {a.lower() for value in found for a in addresses_in(decode_header(value))}


# Matched against "\n" + block: a pattern that starts with a line break is found by a fast scan
# for that character, where "^" in MULTILINE mode is tried at every position.
_OWN_FIELDS_RE = re.compile(
    r"\n(?i:from|return-path|to|delivered-to)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)"
)
_SENDER_FIELDS_RE = re.compile(r"\n(?i:from|return-path)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")


_MAIL_FROM_RE = re.compile(rf"(?i)(?=m)MAIL FROM:?\s*<?{_A}")
_EAI_MAIL_FROM_RE = re.compile(rf"(?i)(?=m)MAIL FROM:?\s*<?{EAI_ADDRESS_RE.pattern}")


def _mail_from(text: str) -> set[str]:
    """The envelope sender quoted in a transcript ("MAIL FROM:<a@b>"): never the recipient."""
    if text.isascii():
        # A substring test first: most bounces quote no transcript. (Exact for ASCII text;
        # case-insensitive matching also pairs some non-ASCII letters with ASCII ones.)
        if "mail from" not in text.lower():
            return set()
        pattern = _MAIL_FROM_RE
    else:
        pattern = _EAI_MAIL_FROM_RE
    return {a.lower() for a in pattern.findall(text)}


def find_recipients(
    text: str, excluded: set[str], first: re.Pattern[str] | None = None
) -> list[tuple[int, str]]:
    """(position, address) of each failed recipient named in a bounce explanation; `first` is
    a format's own recipient pattern, tried before the common ones."""
    skip = excluded | _mail_from(text)
    lines = _RECIPIENT_LINES if text.isascii() else _EAI_RECIPIENT_LINES
    patterns = (((first, False),) if first is not None else ()) + lines
    lined = "\n" + text
    for n, (pattern, on_lined) in enumerate(patterns):
        found: dict[str, int] = {}
        for m in pattern.finditer(lined if on_lined else text):
            addr = m.group(1).strip(".")
            key = addr.lower()
            # A postmaster address alone on its line is a recipient; in prose it is advice.
            if key in skip or key in found or (n > 0 and _is_daemon(key)):
                continue
            found[key] = m.start()
        if found:
            return sorted((pos, text_addr(text, pos, key)) for key, pos in found.items())
    return []


def text_addr(text: str, pos: int, key: str) -> str:
    """The address as written (case kept) at or after `pos`."""
    for m in address_re(text).finditer(text, pos):
        if m.group(1).strip(".").lower() == key:
            return m.group(1).strip(".")
    return key


def _is_daemon(addr: str) -> bool:
    local = addr.split("@", 1)[0]
    return local in ("mailer-daemon", "postmaster", "root", "double-bounce", "nobody")


class TextBounce:
    """Reads a prose bounce of any format in `FORMATS`; the name is the format recognised."""

    name = "text"

    def detect(self, parsed: Parsed) -> list[Hit]:
        text = parsed.explanation
        if not text.strip():
            return []
        lower = text.lower()
        fmt = next((f for f in FORMATS if f.matches(text, lower)), _GENERIC)
        if fmt is _GENERIC and not looks_like_bounce(parsed):
            # A person's mail that names an address is not a bounce: without a known format,
            # the headers must say "bounce" (a mailer daemon, a null return path, ...).
            return []
        excluded = _excluded(parsed)
        spots = find_recipients(text, excluded, fmt.recipient)
        if not spots:
            # Exim and Google also name the failed recipients in a header.
            failed = addresses_in(decode_header(parsed.message.get("X-Failed-Recipients")))
            spots = sorted((_position(text, a), a) for a in failed)
        if not spots and looks_like_bounce(parsed):
            spots = [(0, a) for a in returned_recipients(parsed)[:1]]
        hits: list[Hit] = []
        transient = _says_transient(lower)
        # A reply quoted above the list of recipients applies to those that quote none; it is
        # looked for once, so a bounce listing thousands of recipients stays linear.
        above = reply_in(text[: spots[0][0]]) if spots else ""
        for i, (pos, addr) in enumerate(spots):
            end = spots[i + 1][0] if i + 1 < len(spots) else len(text)
            block = text[pos:end]
            diagnostic = ""
            if fmt.name == "sendmail":
                diagnostic = _sendmail_reply(text, addr)
            diagnostic = diagnostic or reply_in(block) or above or _prose(block, addr)
            hits.append(
                Hit(recipient=addr, diagnostic=diagnostic, transient=transient, detector=fmt.name)
            )
        return hits


_REMOTE_RE = re.compile(r"(?m)^<<<[ \t]*(.*)$")
# Sendmail's line for a failed recipient: "554 5.1.1 <a@b>... User unknown" (groups: the
# address, the text after "...").
_SENDMAIL_LINE_RE = re.compile(
    r"(?m)^[ \t]*(?:[245]\d\d(?:[ -][245]\.\d{1,3}\.\d{1,3})?[ \t]+)?"
    r"<?([^\s<>]+?)>?\.\.\.[ \t]*(.*)$"
)
_CODE_START_RE = re.compile(r"^#?[245]\d\d\b")


def _sendmail_reply(text: str, addr: str) -> str:
    """The reply for one recipient in Sendmail's session transcript.

    Sendmail writes ``NNN <a@b>... text`` for each failed recipient, where NNN is its own code;
    when the text starts with another code, that is the remote server's reply. Otherwise the
    last line it quoted from the remote server (``<<< 550 ...``) before that line is the
    evidence.
    """
    # One pattern for every address, the address compared after: compiling a pattern per
    # address cost more than the rest of reading the bounce.
    key = addr.lower()
    lines = [m for m in _SENDMAIL_LINE_RE.finditer(text) if m.group(1).lower() == key]
    if not lines:
        return ""
    last = lines[-1]
    said = last.group(2).strip()
    if _CODE_START_RE.match(said):
        return said
    remote = list(_REMOTE_RE.finditer(text, 0, last.start()))
    if remote and _CODE_START_RE.match(remote[-1].group(1).strip()):
        return remote[-1].group(1).strip()
    whole = last.group(0).strip()
    return whole if _CODE_START_RE.match(whole) else ""


_LIST_INTRO_RE = re.compile(
    r"(?im)^[^\n]*(?:address(?:\(es\))?|recipients?)[^\n]*(?:failed|following)[^\n]*:[ \t]*\n"
)


def _position(text: str, addr: str) -> int:
    """Where the text speaks of `addr`: where it names it, else where its list of failed
    addresses starts ("The following address(es) failed:"), else the start."""
    pos = text.lower().find(addr.lower())
    if pos >= 0:
        return pos
    intro = _LIST_INTRO_RE.search(text)
    return intro.end() if intro else 0


_BOUNCE_FROM_RE = re.compile(r"(?i)mailer-daemon|post_?master|mail delivery|mail administrator")
# What a bounce's own words say, in the many formats no detector knows by name.
_BOUNCE_TEXT_RE = re.compile(
    r"(?i)could not be delivered|undeliverable|delivery (?:has )?failed|was not delivered|"
    r"unable to deliver|delivery failure|permanent error|returned to sender"
)
_BOUNCE_SUBJECT_RE = re.compile(
    r"(?i)undeliver|returned mail|delivery (?:status|fail|notification|report)|failure notice"
    r"|mail delivery|could not be delivered|non[- ]?delivery|delivery problem|bounce"
)


def looks_like_bounce(parsed: Parsed) -> bool:
    """True when the headers say the message is a bounce, whatever its body."""
    return bool(
        parsed.delivery_status
        or _BOUNCE_FROM_RE.search(parsed.header("From"))
        or _BOUNCE_SUBJECT_RE.search(parsed.header("Subject"))
        or (parsed.message.get("Return-Path") or "").strip() == "<>"
        or _BOUNCE_TEXT_RE.search(parsed.explanation)
    )


def returned_recipients(parsed: Parsed) -> list[str]:
    """The recipients of the returned original (its To header): the last resort, when the
    bounce names no address itself."""
    if parsed.returned is None:
        return []
    return addresses_in(decode_header(parsed.returned.get("To")))


def _prose(block: str, addr: str) -> str:
    """When no SMTP reply is quoted, the explanation's own words are the diagnostic."""
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    if lines and addr.lower() in lines[0].lower():
        first = lines[0].replace(addr, "").strip(" <>:.")
        lines = ([first] if first else []) + lines[1:]
    return " ".join(" ".join(lines[:4]).split())[:500]
