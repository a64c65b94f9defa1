"""Internationalised addresses (RFC 6531 SMTPUTF8, RFC 6532 UTF-8 headers) in prose bounces.

A UTF-8 local part and a Unicode domain are recognised where the prose formats name a failed
recipient; the recipient is stored as the address normaliser gives it (the domain IDNA-encoded,
RFC 5890), so a bounce for ``jörg@bücher.example`` and a reply for ``jörg@xn--bcher-kva.example``
are one address. The messages are written in the shape each system sends.
"""

from __future__ import annotations

import pytest

from deliverability.addresses import normalize_address
from deliverability.ingest.bounce.base import addresses_in
from deliverability.ingest.messages import parse_message
from deliverability.vocabulary import EventKind

JOERG = "jörg@bücher.example"
YONGHU = "用户@例子.example"

QMAIL = """\
Return-Path: <>
Date: 27 Nov 2026 23:59:01 -0000
From: MAILER-DAEMON@mx.bücher.example
To: news@lists.sender.example
Subject: failure notice
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hi. This is the qmail-send program at mx.bücher.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
192.0.2.25 does not like recipient.
Remote host said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown
Giving up on 192.0.2.25.

--- Below this line is a copy of the message.

Return-Path: <news@lists.sender.example>
From: News <news@lists.sender.example>
To: {rcpt}
Subject: Unsere Neuigkeiten

Hallo
"""

EXIM = """\
Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mx.例子.example>
To: news@lists.sender.example
Subject: Mail delivery failed: returning message to sender
Date: Fri, 27 Nov 2026 23:59:01 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.例子.example [192.0.2.30]
    SMTP error from remote mail server after RCPT TO:<{rcpt}>:
    550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <news@lists.sender.example>
From: news@lists.sender.example
To: {rcpt}
Subject: news
"""

EXCHANGE = """\
From: postmaster@bücher.example
To: news@lists.sender.example
Date: Fri, 27 Nov 2026 23:59:01 +0000
Subject: Undeliverable: news
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit

Delivery has failed to these recipients or groups:

{rcpt}
The email address you entered couldn't be found. Please check the recipient's email address
and try to resend the message.

Diagnostic information for administrators:

Generating server: mail.bücher.example

{rcpt}
Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'

Original message headers:

From: news@lists.sender.example
To: {rcpt}
Subject: news
"""


def _message(template: str, rcpt: str) -> bytes:
    return template.format(rcpt=rcpt).encode("utf-8")


@pytest.mark.parametrize("rcpt", [JOERG, YONGHU], ids=["latin", "han"])
@pytest.mark.parametrize(
    ("template", "detector"),
    [(QMAIL, "qmail"), (EXIM, "exim"), (EXCHANGE, "exchange")],
    ids=["qmail", "exim", "exchange"],
)
def test_a_prose_bounce_for_an_internationalised_address_names_it_normalised(
    template: str, detector: str, rcpt: str
) -> None:
    records = parse_message(_message(template, rcpt))
    assert len(records) == 1, records
    record = records[0]
    assert record.error is None
    assert record.kind is EventKind.BOUNCE
    assert record.detector == detector
    assert record.recipient == normalize_address(rcpt).text
    assert str(record.status) == "5.1.1"
    assert record.code == 550


def test_the_unicode_domain_is_stored_as_its_a_label() -> None:
    (record,) = parse_message(_message(QMAIL, JOERG))
    assert record.recipient == "jörg@xn--bcher-kva.example"


def test_an_internationalised_address_is_found_in_text_beside_ascii_ones() -> None:
    text = f"Failed: <{JOERG}>, <bob@example.com> and {YONGHU}\n"
    assert addresses_in(text) == [JOERG, "bob@example.com", YONGHU]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Chinese and Japanese prose runs words into addresses without a space.
        ("a@example.jp您好\n", ["a@example.jp"]),
        ("您好a@example.jp\n", ["a@example.jp"]),
        ("宛先：用户@例子.example。\n", ["用户@例子.example"]),
        ("<用户@例子.example>へ送信できませんでした\n", ["用户@例子.example"]),
    ],
)
def test_words_run_into_an_address_are_not_taken_as_part_of_it(
    text: str, expected: list[str]
) -> None:
    assert addresses_in(text) == expected


def test_an_internationalised_sender_is_not_taken_for_the_failed_recipient() -> None:
    message = _message(QMAIL, "bob@example.com").replace(
        b"news@lists.sender.example", "rundbrief@absender.bücher.example".encode()
    )
    (record,) = parse_message(message)
    assert record.recipient == "bob@example.com"


# --- RFC 6533: the utf-8 address type in DSN fields --------------------------------------------

GLOBAL_DSN = """\
From: MAILER-DAEMON@mx.sender.example
To: news@lists.sender.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

The mail system could not deliver the message.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sender.example

{fields}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B--
"""


@pytest.mark.parametrize(
    ("fields", "final", "original"),
    [
        # The 7-bit form: a non-ASCII character as \\x{HEX} (RFC 6533 section 3).
        ("Final-Recipient: utf-8; j\\x{F6}rg@example.com", "jörg@example.com", None),
        ("Final-Recipient: UTF-8; j\\x{00F6}rg@b\\x{FC}cher.example", JOERG, None),
        # "+" and "=" are never written bare in that form: \\x{2B}, \\x{3D}.
        (
            "Final-Recipient: utf-8; alice\\x{2B}news@example.com\n"
            "Original-Recipient: utf-8; \\x{7528}\\x{6237}@example.com",
            "alice+news@example.com",
            "用户@example.com",
        ),
        # An escape that names no character is left as it is: no address is made up.
        ("Final-Recipient: utf-8; bad\\x{D800}@example.com", None, None),
    ],
)
def test_a_utf8_type_recipient_field_is_decoded_before_it_is_read(
    fields: str, final: str | None, original: str | None
) -> None:
    [record] = parse_message(GLOBAL_DSN.format(fields=fields).encode())
    expected = None if final is None else normalize_address(final).text
    assert record.recipient == expected
    assert record.original_recipient == (
        None if original is None else normalize_address(original).text
    )
    if final is None:
        assert record.error is not None
        assert record.error.startswith("Final-Recipient:")
