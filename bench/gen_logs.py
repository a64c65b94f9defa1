"""Make synthetic but realistic sending logs: a mailer reply log (JSON Lines) and a Postfix log.

One simulated night of a newsletter: most mail is accepted, some addresses do not exist, Gmail and
Yahoo rate-limit for a while, small servers greylist, a few mailboxes are full, a blocklist hits
now and then, one destination is unreachable all night and its queued mail expires. The reply
texts follow what those providers actually answer (their postmaster pages list them). Addresses
use the documentation domains (RFC 2606) and the big providers' names; IP addresses come from the
documentation ranges (RFC 5737).

    python bench/gen_logs.py --lines 200000 --out big-logs        # both formats, for benchmarks
    python bench/gen_logs.py --examples examples                 # the shipped samples

The output depends only on the seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

NIGHT = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
SENDER_IP = "192.0.2.10"
SENDER_DOMAIN = "news.example.org"


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _names(
    "alice anna ben carla chris david emma eva felix frank grace hanna ian jana jonas julia karl "
    "laura lea leon lucas maria max mia noah olga paul petra rosa sam sara sofia tim tom vera "
    "yusuf zoe"
)
LAST = _names(
    "adams becker brown costa dubois fischer garcia hoffmann jansen keller king lopez martin "
    "meyer moreau nagy novak olsen petit rossi schmidt silva smith tanaka vogel weber wilson"
)

# Destination domain -> (share of the list, MX host, MX address).
DOMAINS: dict[str, tuple[float, str, str]] = {
    "gmail.com": (0.34, "gmail-smtp-in.l.google.com", "198.51.100.26"),
    "yahoo.com": (0.12, "mta7.am0.yahoodns.net", "198.51.100.71"),
    "outlook.com": (0.08, "outlook-com.olc.protection.outlook.com", "203.0.113.44"),
    "hotmail.com": (0.07, "hotmail-com.olc.protection.outlook.com", "203.0.113.45"),
    "example.com": (0.16, "mx.example.com", "192.0.2.25"),
    "example.org": (0.11, "mail.example.org", "192.0.2.26"),
    "example.net": (0.10, "mx1.example.net", "198.51.100.80"),
    "legacy.example.net": (0.02, "mx.legacy.example.net", "203.0.113.99"),
}
BIG = {"gmail.com", "yahoo.com", "outlook.com", "hotmail.com"}
UNREACHABLE = "legacy.example.net"


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _gsmtp(rng: random.Random) -> str:
    prefix = f"{rng.choice('abcdefgh')}{rng.randint(10, 99)}"
    return f"{prefix}si{_hex(rng, 12)}qkb.{rng.randint(1, 999)} - gsmtp"


def accepted(rng: random.Random, domain: str, address: str, message_id: str) -> str:
    if domain == "gmail.com":
        return f"250 2.0.0 OK  {rng.randint(1764290000, 1764320000)} {_gsmtp(rng)}"
    if domain == "yahoo.com":
        return "250 ok dirdel"
    if domain in ("outlook.com", "hotmail.com"):
        host = f"AM{rng.randint(0, 9)}PR{rng.randint(10, 99)}MB{rng.randint(1000, 9999)}"
        return (
            f"250 2.6.0 <{message_id}> [InternalId={rng.randint(10**12, 10**13)}, "
            f"Hostname={host}.eurprd0{rng.randint(1, 9)}.prod.exchangelabs.com] "
            f"{rng.randint(20000, 60000)} bytes in 0.{rng.randint(100, 999)}, "
            "Queued mail for delivery"
        )
    return f"250 2.0.0 Ok: queued as {_hex(rng, 10).upper()}"


def unknown_user(rng: random.Random, domain: str, address: str) -> str:
    if domain == "gmail.com":
        return (
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
            "550-5.1.1 double-checking the recipient's email address for typos or\n"
            "550-5.1.1 unnecessary spaces. For more information, go to\n"
            f"550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {_gsmtp(rng)}"
        )
    if domain == "yahoo.com":
        return (
            f"554 delivery error: dd This user doesn't have a yahoo.com account ({address}) [0]"
            f" - mta{rng.randint(1000, 9999)}.mail.gq1.yahoo.com"
        )
    if domain in ("outlook.com", "hotmail.com"):
        return "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)."
    return (
        f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
    )


def rate_limited(rng: random.Random, domain: str) -> str:
    if domain == "gmail.com":
        return (
            f"421-4.7.28 [{SENDER_IP}      15] Our system has detected an unusual rate of\n"
            "421-4.7.28 unsolicited mail originating from your IP address. To protect our\n"
            "421-4.7.28 users from spam, mail sent from your IP address has been temporarily\n"
            "421-4.7.28 rate limited. For more information, go to\n"
            "421 4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError "
            + _gsmtp(rng)
        )
    if domain == "yahoo.com":
        return (
            f"421 4.7.0 [TSS04] Messages from {SENDER_IP} temporarily deferred due to unexpected "
            "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
        )
    if domain in ("outlook.com", "hotmail.com"):
        return (
            f"451 4.7.500 Server busy. Please try again later from [{SENDER_IP}]. (S77719) "
            f"[BN{rng.randint(1, 9)}NAM02FT0{rng.randint(10, 99)}"
            ".eop-nam02.prod.protection.outlook.com]"
        )
    return "421 4.7.0 Too many concurrent SMTP connections from this IP address; try again later"


def greylisted(rng: random.Random, domain: str, address: str) -> str:
    if rng.random() < 0.5:
        return (
            f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, see "
            f"http://postgrey.schweikert.ch/help/{domain}.html"
        )
    return "451 4.7.1 Greylisting in action, please come back later"


def mailbox_full(rng: random.Random, domain: str, address: str) -> str:
    if domain == "gmail.com":
        return (
            "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
            "552 5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaPerm "
            + _gsmtp(rng)
        )
    return rng.choice(
        [
            f"552 5.2.2 <{address}>: Mailbox full",
            "552 5.2.2 Quota exceeded (mailbox for user is full)",
        ]
    )


def blocked(rng: random.Random, domain: str) -> str:
    if domain in ("outlook.com", "hotmail.com"):
        return (
            f"550 5.7.1 Unfortunately, messages from [{SENDER_IP}] weren't sent. Please contact "
            "your Internet service provider since part of their network is on our block list "
            "(S3150). You can also refer your provider to "
            "http://mail.live.com/mail/troubleshooting.aspx#errors."
        )
    return rng.choice(
        [
            f"554 5.7.1 Service unavailable; Client host [{SENDER_IP}] blocked using "
            f"zen.spamhaus.org; https://www.spamhaus.org/query/ip/{SENDER_IP}",
            f"554 5.7.1 Rejected: {SENDER_IP} listed at b.barracudacentral.org",
        ]
    )


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt of one message to one recipient, as the sender saw it."""

    at: datetime
    recipient: str
    message_id: str
    attempt: int
    reply: str | None  # None: no reply at all (the connection timed out)
    final: bool


def _recipient(rng: random.Random, used: set[str]) -> tuple[str, str]:
    names = list(DOMAINS)
    weights = [DOMAINS[d][0] for d in names]
    for tries in range(20):
        domain = rng.choices(names, weights)[0]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = rng.choice(
            [f"{first}.{last}", f"{first}{rng.randint(1, 99)}", f"{first[0]}{last}", first]
        )
        address = f"{local}@{domain}"
        if address in used and tries == 19:
            # Big lists run out of names: number it, as providers suggest to the next person.
            address = f"{local}.{len(used)}@{domain}"
        if address not in used:
            break
    used.add(address)
    return address, domain


def night(rng: random.Random, recipients: int) -> Iterator[Attempt]:
    """The attempts of one newsletter issue to `recipients` addresses, in no particular order."""
    used: set[str] = set()
    scenarios = ["ok", "unknown", "rate", "grey", "full", "block"]
    weights = [0.74, 0.08, 0.07, 0.06, 0.025, 0.025]
    for n in range(recipients):
        address, domain = _recipient(rng, used)
        start = NIGHT + timedelta(seconds=n * 3600 / max(recipients, 1) + rng.random())
        message_id = f"{start:%Y%m%d%H%M%S}.{_hex(rng, 16)}@{SENDER_DOMAIN}"
        if domain == UNREACHABLE:
            # Connection timeouts, retried with Postfix's growing backoff, all night.
            for i, minutes in enumerate((0, 17, 50, 117, 250)):
                yield Attempt(
                    start + timedelta(minutes=minutes), address, message_id, i + 1, None, False
                )
            continue
        scenario = rng.choices(scenarios, weights)[0]
        if scenario == "grey" and domain in BIG:
            scenario = "ok"
        if scenario == "ok":
            yield Attempt(
                start, address, message_id, 1, accepted(rng, domain, address, message_id), True
            )
        elif scenario == "unknown":
            yield Attempt(start, address, message_id, 1, unknown_user(rng, domain, address), True)
        elif scenario == "full":
            yield Attempt(start, address, message_id, 1, mailbox_full(rng, domain, address), True)
        elif scenario == "block":
            yield Attempt(start, address, message_id, 1, blocked(rng, domain), True)
        else:
            first = (
                rate_limited(rng, domain)
                if scenario == "rate"
                else greylisted(rng, domain, address)
            )
            yield Attempt(start, address, message_id, 1, first, False)
            later = start + timedelta(
                minutes=rng.randint(5, 20) if scenario == "grey" else rng.randint(30, 90)
            )
            yield Attempt(
                later, address, message_id, 2, accepted(rng, domain, address, message_id), True
            )


# --- mailer reply log --------------------------------------------------------------------------

MAILER_BROKEN = [
    # A write cut short when the mailer was killed.
    '{"at": "2026-11-28T02:13:44Z", "recipient": "mara.k',
    # A date that does not exist.
    '{"at": "2026-11-31T02:20:00Z", "recipient": "tom.weber@example.com", '
    '"message_id": "<20261128022000.badc0ffee0ddf00d@news.example.org>", "attempt": 1, '
    '"reply": "250 2.0.0 Ok: queued as 9C1D2E3F4A"}',
    # A mailer bug: the reply has no code at all.
    '{"at": "2026-11-28T02:31:09Z", "recipient": "petra.nagy@example.org", '
    '"message_id": "<20261128023109.0123456789abcdef@news.example.org>", "attempt": 1, '
    '"reply": "OK"}',
    # Not an address.
    '{"at": "2026-11-28T02:47:51Z", "recipient": "undisclosed-recipients:;", '
    '"message_id": "<20261128024751.fedcba9876543210@news.example.org>", "attempt": 1, '
    '"reply": "250 2.0.0 Ok"}',
]


_SINGLE_LINE_RE = re.compile(r"(\d{3}) (?:([245]\.\d{1,3}\.\d{1,3}) )?([^\n]*)\Z")


def mailer_lines(rng: random.Random, lines: int, broken: bool = True) -> list[str]:
    """JSON Lines of a reply log with about `lines` lines, in time order."""
    attempts = sorted(
        (a for a in night(rng, max(1, int(lines / 1.12))) if a.reply is not None),
        key=lambda a: a.at,
    )
    out: list[tuple[datetime, str]] = []
    for a in attempts:
        assert a.reply is not None
        row: dict[str, object] = {
            "at": a.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "recipient": a.recipient,
            "message_id": f"<{a.message_id}>",
            "attempt": a.attempt,
        }
        parts = _SINGLE_LINE_RE.match(a.reply)
        if parts and rng.random() < 0.1:
            # Some mailers log the parts instead of the raw reply.
            code, status, text = parts.groups()
            row |= {"code": int(code), "text": text} | ({"status": status} if status else {})
        else:
            row["reply"] = a.reply
        out.append((a.at, json.dumps(row)))
    text = [line for _, line in out]
    if broken:
        for i, bad in enumerate(MAILER_BROKEN):
            text.insert(min(len(text), (i + 1) * len(text) // (len(MAILER_BROKEN) + 1)), bad)
    return text[:lines] if len(text) > lines + len(MAILER_BROKEN) else text


# --- Postfix log -------------------------------------------------------------------------------


def _syslog(at: datetime) -> str:
    return f"{at:%b} {at.day:>2} {at:%H:%M:%S}"


POSTFIX_BROKEN = [
    # A line cut short (the disk filled up).
    "{ts} mx1 postfix/smtp[2217]: 7A1C30B2F4: to=<paul.meyer@example.com>, "
    "relay=mx.example.com[192.0.2.25]:25, delay=0.41, del",
    # Two writers interleaved by syslog.
    "{ts} mx1 postfix/smtp[2219]: 7A1C30B2F5: to=<lea.rossi@example.org>, relay=mail.exa{ts} mx1 "
    "postfix/smtp[2220]: 7A1C30B2F6: to=<sam@example.org>, relay=mail.example.org[192.0.2.26]:25, "
    "delay=0.3, delays=0.01/0/0.1/0.19, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 41BC9)",
    # A date that does not exist.
    "Nov 31 03:00:00 mx1 postfix/smtp[2221]: 7A1C30B2F7: to=<vera@example.net>, "
    "relay=mx1.example.net[198.51.100.80]:25, delay=0.2, delays=0/0/0.1/0.1, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok)",
]


def postfix_lines(rng: random.Random, lines: int, broken: bool = True) -> list[str]:
    """Lines of a Postfix mail.log with about `lines` lines, in time order."""
    out: list[tuple[datetime, int, str]] = []
    seq = 0

    def emit(at: datetime, text: str) -> None:
        nonlocal seq
        seq += 1
        out.append((at, seq, f"{_syslog(at)} mx1 {text}"))

    by_message: dict[str, list[Attempt]] = {}
    for a in night(rng, max(1, lines // 6)):
        by_message.setdefault(a.message_id, []).append(a)
    for message_id, attempts in by_message.items():
        qid = _hex(rng, 10).upper()
        first = attempts[0]
        domain = first.recipient.rsplit("@", 1)[1]
        _, mx, ip = DOMAINS[domain]
        queued = first.at - timedelta(seconds=rng.uniform(0.2, 2))
        pickup = rng.randint(2000, 2999)
        if domain == UNREACHABLE:
            # Queued days ago (the cleanup line is in an older log): no Message-ID here.
            queued = first.at - timedelta(days=5)
        else:
            emit(
                queued, f"postfix/pickup[{pickup}]: {qid}: uid=1001 from=<bounces@{SENDER_DOMAIN}>"
            )
            emit(queued, f"postfix/cleanup[{pickup + 4}]: {qid}: message-id=<{message_id}>")
            emit(
                queued,
                f"postfix/qmgr[1987]: {qid}: from=<bounces@{SENDER_DOMAIN}>, "
                f"size={rng.randint(18000, 60000)}, nrcpt=1 (queue active)",
            )
        for a in attempts:
            pid = rng.randint(3000, 9999)
            delay = (a.at - queued).total_seconds() + rng.uniform(0.1, 1.5)
            relay = f"{mx}[{ip}]:25"
            if a.reply is None:
                emit(a.at, f"postfix/smtp[{pid}]: connect to {relay}: Connection timed out")
                dsn, status = "4.4.1", "deferred"
                text = f"connect to {relay}: Connection timed out"
                relay = "none"
            else:
                code = a.reply[:3]
                flat = " ".join(a.reply.split())
                parts = flat.split(" ")
                dsn = (
                    parts[1]
                    if len(parts) > 1 and parts[1][:1] in "245" and parts[1].count(".") == 2
                    else f"{code[0]}.0.0"
                )
                if flat.startswith(code + "-"):
                    dsn = flat[4:].split(" ", 1)[0]
                status = {"2": "sent", "4": "deferred", "5": "bounced"}[code[0]]
                if rng.random() < 0.6:
                    emit(
                        a.at,
                        f"postfix/smtp[{pid}]: Trusted TLS connection established to {relay}: "
                        "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
                    )
                command = "end of DATA command" if status == "sent" else "RCPT TO command"
                text = (
                    flat
                    if status == "sent"
                    else f"host {mx}[{ip}] said: {flat} (in reply to {command})"
                )
            d1, d2 = rng.uniform(0, 0.05), rng.uniform(0.05, 0.4)
            emit(
                a.at,
                f"postfix/smtp[{pid}]: {qid}: to=<{a.recipient}>, relay={relay}, "
                f"delay={delay:.1f}, delays={delay - d1 - d2:.2f}/{d1:.2f}/{d2:.2f}/0.1, "
                f"dsn={dsn}, status={status} ({text})",
            )
            if status == "bounced":
                emit(
                    a.at,
                    f"postfix/bounce[{pid + 1}]: {qid}: sender non-delivery notification: "
                    f"{_hex(rng, 10).upper()}",
                )
            if status in ("sent", "bounced"):
                emit(a.at, f"postfix/qmgr[1987]: {qid}: removed")
        if domain == UNREACHABLE:
            # maximal_queue_lifetime (5 days by default) runs out.
            end = attempts[-1].at + timedelta(minutes=30)
            emit(
                end,
                f"postfix/qmgr[1987]: {qid}: from=<bounces@{SENDER_DOMAIN}>, "
                "status=expired, returned to sender",
            )
            emit(
                end,
                f"postfix/bounce[2301]: {qid}: sender non-delivery notification: "
                + _hex(rng, 10).upper(),
            )
            emit(end, f"postfix/qmgr[1987]: {qid}: removed")
    out.sort()
    result = [line for _, _, line in out]
    if broken:
        for i, bad in enumerate(POSTFIX_BROKEN):
            at = out[(i + 1) * len(out) // (len(POSTFIX_BROKEN) + 1)][0] if out else NIGHT
            result.insert(
                (i + 1) * len(result) // (len(POSTFIX_BROKEN) + 1), bad.format(ts=_syslog(at))
            )
    return result


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_postfix_log(path: Path, lines: int, seed: int = 1, broken: bool = True) -> Path:
    return write_lines(path, postfix_lines(random.Random(seed), lines, broken))


def write_mailer_log(path: Path, lines: int, seed: int = 1, broken: bool = True) -> Path:
    return write_lines(path, mailer_lines(random.Random(seed), lines, broken))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="about how many lines per log")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="folder for mailer-replies.jsonl and mail.log")
    parser.add_argument("--examples", type=Path, help="write the shipped samples into this folder")
    args = parser.parse_args(argv)
    if args.examples:
        # The samples feed the README's quick start, which must run clean: no broken lines
        # (the tests make their own).
        write_mailer_log(args.examples / "mailer-replies.jsonl", 420, seed=2026, broken=False)
        write_postfix_log(args.examples / "postfix-mail.log", 500, seed=29, broken=False)
        print(f"samples written to {args.examples}")
    if args.out:
        mailer = write_mailer_log(args.out / "mailer-replies.jsonl", args.lines, args.seed)
        postfix = write_postfix_log(args.out / "mail.log", args.lines, args.seed)
        print(f"{mailer}\n{postfix}")
    if not (args.examples or args.out):
        parser.error("give --out and/or --examples")


if __name__ == "__main__":
    main()
