"""Non-standard bounce bodies: qmail, Exim, old Sendmail, Exchange, Gmail, Yahoo, and the rest.

These mail systems explain a failure in prose. Each format is recognised by a phrase its bodies
carry (the table `FORMATS`), and all are read the same way: find the lines that name a failed
recipient, and take the SMTP reply that follows each one. The recipient patterns are ordered from
the most specific (an address alone on its line, as qmail, Exim and Gmail write it) to the least.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deliverability.ingest.bounce.base import ADDRESS_RE, Hit, addresses_in, reply_in
from deliverability.ingest.bounce.mime import Parsed, decode_header

__all__ = ["FORMATS", "TextFormat"]

_A = ADDRESS_RE.pattern

# Lines that name a failed recipient, most specific first. Each has one group: the address.
_RECIPIENT_LINES: tuple[re.Pattern[str], ...] = (
    # An address at the start of its line: alone (qmail, Yahoo, Courier "<a@b>:"; Exim, Gmail
    # "  a@b"), or followed by Exchange 2003's "on <date>", Exim's "(generated from c@d)",
    # "a@b: 550 ...", Sendmail's transcript "554 <a@b>... User unknown".
    re.compile(
        rf"(?m)^[ \t]*(?:[-*>]+[ \t]*)?"
        rf"(?:[245]\d\d(?:[ -][245]\.\d{{1,3}}\.\d{{1,3}})?[ \t]+)?[<\"]?{_A}[>\"]?"
        rf"(?:[ \t]*:?[ \t]*$|[ \t]+on[ \t]|[ \t]*\((?:generated|expanded|ultimately)|"
        rf":[ \t]+\S|\.\.\.[ \t]*\S|[ \t]*\[)"
    ),
    # Labelled: "Recipient: a@b", "Original-Recipient: rfc822;a@b", "To: a@b", "Failed address:".
    re.compile(
        rf"(?mi)^[ \t]*(?:[\w -]{{0,30}}recipient(?:\(s\))?s?|to|address(?:es)?|rcpt|"
        rf"destinataire|destinatario|empf[äa]nger|invalid|unknown|failed)[ \t]*(?:address)?"
        rf"[ \t]*[:=][ \t]*(?:rfc822;)?[ \t]*\"?[^<\n@]*?<?{_A}"
    ),
    # "The following recipients returned permanent errors: a@b", "Delivery failed: a@b",
    # "Unknown user: a@b": a short label, a colon, the address.
    re.compile(rf"(?mi)(?:^[ \t]*[\w ,'()-]{{0,40}}|recipients?[^\n:]{{0,60}}):[ \t]*<?{_A}>?"),
    # In a sentence: "delivering your mail to <a@b>", "message to <a@b> could not", "RCPT TO:<a@b>".
    re.compile(
        rf"(?i)(?:deliver(?:ed|ing|y)?|sent|send|mail(?:ed)?|message|rcpt|undeliverable)\s+"
        rf"(?:(?:your|the|this)\s+)?(?:(?:e-?)?mail\s+|message\s+)?(?:to|for)\s*:?\s*"
        rf"['\"]?<?{_A}"
    ),
    re.compile(rf"(?i)(?:recipient|address|user|mailbox)\s+['\"]?<?{_A}"),
    re.compile(rf"<{_A}>"),
)


@dataclass(frozen=True)
class TextFormat:
    """One prose bounce format: its name and the phrase that identifies it."""

    name: str
    signature: re.Pattern[str]
    #: The format's own recipient pattern (one group: the address), tried first.
    recipient: re.Pattern[str] | None = None


def _sig(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I | re.M)


# Identifying phrases, from the formats' own bodies. Order matters only where two could match.
FORMATS: tuple[TextFormat, ...] = (
    TextFormat("qmail", _sig(r"This is the qmail-send program|qmail-send|\(#[45]\.\d+\.\d+\)")),
    TextFormat("exim", _sig(r"created automatically by mail delivery software")),
    TextFormat("sendmail", _sig(r"-{3,}\s*Transcript of session follows")),
    TextFormat(
        "exchange",
        _sig(
            r"Diagnostic information for administrators|did not reach the following recipient"
            r"|Remote Server returned|MSEXCH|Delivery has failed to these recipients"
        ),
    ),
    TextFormat("gmail", _sig(r"Delivery to the following recipient|Google tried to deliver")),
    TextFormat("yahoo", _sig(r"Sorry, we were unable to deliver your message")),
    TextFormat("dragonfly", _sig(r"DragonFly Mail Agent")),
    TextFormat("opensmtpd", _sig(r"OpenSMTPD|Your message could not be delivered")),
    TextFormat("postfix", _sig(r"This is the mail system at host|The Postfix program")),
    TextFormat("courier", _sig(r"Courier mail server")),
    TextFormat("domino", _sig(r"Lotus Domino|Your message\s+Subject:.*\s+was not delivered to")),
    TextFormat("amazonses", _sig(r"amazonses|Amazon SES")),
    TextFormat("googlegroups", _sig(r"Google Groups")),
    # Zoho: "a@b Invalid Address, ERROR_CODE :550, ERROR_CODE :Requested action not taken".
    TextFormat(
        "zoho",
        _sig(r"ERROR_CODE\s*:"),
        recipient=re.compile(rf"(?m)^[ \t]*<?{_A}>?[ \t]+[^\n]*ERROR_CODE"),
    ),
    # fml (a Japanese list manager) refuses posts from non-members, naming the list.
    TextFormat(
        "fml",
        _sig(r"You are not a member of this mailing list"),
        recipient=re.compile(rf"(?i)not a member of this mailing list\s+<{_A}>"),
    ),
    TextFormat("text", _sig(r"")),
)

_TRANSIENT_RE = re.compile(
    r"(?i)\b(?:temporar(?:y|ily)|will (?:continue|keep) (?:to )?(?:try|retry|attempt)|"
    r"still trying|not yet been delivered|has been delayed|delivery (?:is )?delayed|"
    r"will be retried|retry(?:ing)? (?:later|for)|warning: message)"
)
_PERMANENT_RE = re.compile(r"(?i)\b(?:permanent(?:ly)?|given up|giving up|fatal)\b")


def _excluded(parsed: Parsed) -> set[str]:
    """Addresses that are never the failed recipient: the bounce's own addresses, and the
    sender of the returned original (it is who the bounce goes back to)."""
    out: set[str] = set()
    heads = [parsed.message]
    if parsed.returned is not None:
        heads.append(parsed.returned)
    for head in heads:
        for name in ("From", "Return-Path", "Sender", "Reply-To"):
            out.update(a.lower() for a in addresses_in(decode_header(head.get(name))))
    for name in ("To", "Delivered-To"):
        out.update(a.lower() for a in addresses_in(decode_header(parsed.message.get(name))))
    return out


def _mail_from(text: str) -> set[str]:
    return {a.lower() for a in re.findall(rf"(?i)MAIL FROM:?\s*<?{_A}", text)}


def find_recipients(
    text: str, excluded: set[str], first: re.Pattern[str] | None = None
) -> list[tuple[int, str]]:
    """(position, address) of each failed recipient named in a bounce explanation; `first` is
    a format's own recipient pattern, tried before the common ones."""
    skip = excluded | _mail_from(text)
    patterns = ((first,) if first is not None else ()) + _RECIPIENT_LINES
    for n, pattern in enumerate(patterns):
        found: dict[str, int] = {}
        for m in pattern.finditer(text):
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
    for m in ADDRESS_RE.finditer(text, pos):
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
        fmt = next(f for f in FORMATS if f.signature.search(text))
        excluded = _excluded(parsed)
        spots = find_recipients(text, excluded, fmt.recipient)
        if not spots:
            # Exim and Google also name the failed recipients in a header.
            failed = addresses_in(decode_header(parsed.message.get("X-Failed-Recipients")))
            spots = sorted((_position(text, a), a) for a in failed)
        if not spots and looks_like_bounce(parsed):
            spots = [(0, a) for a in returned_recipients(parsed)[:1]]
        hits: list[Hit] = []
        transient = bool(_TRANSIENT_RE.search(text)) and not _PERMANENT_RE.search(text)
        for i, (pos, addr) in enumerate(spots):
            end = spots[i + 1][0] if i + 1 < len(spots) else len(text)
            block = text[pos:end]
            diagnostic = ""
            if fmt.name == "sendmail":
                diagnostic = _sendmail_reply(text, addr)
            diagnostic = (
                diagnostic or reply_in(block) or reply_in(text[:pos]) or _prose(block, addr)
            )
            hits.append(
                Hit(recipient=addr, diagnostic=diagnostic, transient=transient, detector=fmt.name)
            )
        return hits


_REMOTE_RE = re.compile(r"(?m)^<<<[ \t]*(.*)$")
_CODE_START_RE = re.compile(r"^#?[245]\d\d\b")


def _sendmail_reply(text: str, addr: str) -> str:
    """The reply for one recipient in Sendmail's session transcript.

    Sendmail writes ``NNN <a@b>... text`` for each failed recipient, where NNN is its own code;
    when the text starts with another code, that is the remote server's reply. Otherwise the
    last line it quoted from the remote server (``<<< 550 ...``) before that line is the
    evidence.
    """
    line_re = re.compile(
        rf"(?mi)^[ \t]*(?:[245]\d\d(?:[ -][245]\.\d{{1,3}}\.\d{{1,3}})?[ \t]+)?<?"
        rf"{re.escape(addr)}>?\.\.\.[ \t]*(.*)$"
    )
    lines = list(line_re.finditer(text))
    if not lines:
        return ""
    last = lines[-1]
    said = last.group(1).strip()
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


_BOUNCE_FROM_RE = re.compile(r"(?i)mailer-daemon|postmaster|mail delivery|mail administrator")
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
        or parsed.message.get("Return-Path", "").strip() == "<>"
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
