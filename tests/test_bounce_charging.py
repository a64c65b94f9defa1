"""Which address a bounce message is charged to (`convert.message_items`).

A DSN names the recipient twice when an address was rewritten on the way (RFC 3464 sections
2.3.1 and 2.3.2): Original-Recipient, the address the sender gave (its ORCPT, RFC 3461 section
4.2), and Final-Recipient, the mailbox the reporting MTA tried. A VERP return path names the one
address the message was sent to. The address on the sender's list is the one charged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from deliverability.ingest.convert import message_items
from deliverability.ingest.messages import parse_message

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _block(final: str, original: str | None = None, status: str = "5.1.1") -> str:
    orcpt = f"Original-Recipient: rfc822;{original}\n" if original else ""
    return (
        f"Final-Recipient: rfc822; {final}\n{orcpt}Action: failed\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\n\n"
    )


def _dsn(*blocks: str, to: str = "bounces@lists.example.org") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.lists.example.org>\n"
        f"To: {to}\n"
        "Date: Sat, 28 Nov 2026 09:00:00 +0000\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThe mail system could not deliver your message.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.lists.example.org\n\n" + "".join(blocks) + "--B--\n"
    ).encode()


def _charged(data: bytes) -> tuple[list[tuple[str, str]], str | None]:
    items, rejected = message_items(data, source="bounces.mbox", position="0", now=NOW)
    return [(i.recipient, i.position) for i in items], None if rejected is None else rejected.error


# --- Original-Recipient and Final-Recipient ------------------------------------------------------


def test_a_forwarded_address_is_charged_as_the_sender_wrote_it_not_where_it_forwards() -> None:
    # The subscriber's address forwards to another mailbox, which refuses. Final-Recipient is
    # that mailbox, an address not on the list; charged to it, the list's address is mailed on.
    data = _dsn(_block("reader.smith@othermail.example", "reader@example.com"))
    assert _charged(data) == ([("reader@example.com", "0")], None)


def test_an_original_recipient_that_is_no_address_leaves_the_final_recipient_charged() -> None:
    data = _dsn(_block("reader@example.com", "not an address"))
    assert _charged(data) == ([("reader@example.com", "0")], None)


def test_each_recipient_of_a_report_is_charged_to_its_own_original_address() -> None:
    data = _dsn(
        _block("a.forwarded@othermail.example", "ann@example.com"),
        _block("bob@example.net"),
    )
    assert _charged(data) == ([("ann@example.com", "0#0"), ("bob@example.net", "0#1")], None)


def test_the_mailboxes_an_address_expanded_to_are_each_charged_for_their_own_failure() -> None:
    # One address the sender gave, expanded (an alias to several mailboxes): one mailbox failing
    # is no failure of the address the others still receive at.
    data = _dsn(
        _block("first@home.example", "family@example.com"),
        _block("second@work.example", "family@example.com"),
    )
    assert _charged(data) == (
        [("first@home.example", "0#0"), ("second@work.example", "0#1")],
        None,
    )


# --- VERP return paths --------------------------------------------------------------------------


def test_a_report_on_one_recipient_is_charged_to_the_address_its_verp_path_names() -> None:
    data = _dsn(
        _block("reader.smith@othermail.example", "reader.smith@othermail.example"),
        to="bounces+reader=example.com@lists.example.org",
    )
    assert _charged(data) == ([("reader@example.com", "0")], None)


def test_a_report_on_several_recipients_charges_each_its_own_and_never_the_verp_address() -> None:
    data = _dsn(
        _block("m2@example.com"),
        _block("m3@example.com"),
        to="bounces+m1=example.com@lists.example.org",
    )
    assert _charged(data) == ([("m2@example.com", "0#0"), ("m3@example.com", "0#1")], None)


def test_a_block_of_several_that_names_no_address_is_rejected_not_charged_to_the_verp_address() -> (
    None
):
    # The block is about someone the report does not name: charged to the VERP address, the
    # address the return path names got a second, unrelated bounce.
    data = _dsn(
        _block("m1@example.com"),
        _block("not an address", status="5.2.2"),
        to="bounces+m1=example.com@lists.example.org",
    )
    charged, error = _charged(data)
    assert charged == [("m1@example.com", "0#0")]
    assert error is not None
    assert error.startswith("Final-Recipient: ")


# --- a bounce of a bounce -----------------------------------------------------------------------


def _double_bounce(inner_final: str) -> bytes:
    """Postfix's postmaster copy of a bounce it could not deliver: the outer report is about
    the bounce's recipient, the VERP return path; the bounce it returns is about the subscriber."""
    inner = _dsn(_block(inner_final), to="bounces+alice=example.com@lists.example.org").decode()
    return (
        "From: Mail Delivery System <MAILER-DAEMON@lists.example.org>\n"
        "To: postmaster@lists.example.org\n"
        "Subject: Postmaster Copy: Undelivered Mail\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="OUT"\n\n'
        "--OUT\nContent-Type: text/plain\n\nThe bounce could not be delivered.\n\n"
        "--OUT\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; lists.example.org\n\n"
        "Final-Recipient: rfc822; bounces+alice=example.com@lists.example.org\n"
        "Action: failed\nStatus: 5.2.2\nDiagnostic-Code: x-unix; mailbox full\n\n"
        "--OUT\nContent-Type: message/rfc822\n\n" + inner + "\n--OUT--\n"
    ).encode()


def test_a_bounce_of_a_bounce_charges_the_subscriber_with_the_bounce_it_returns_only() -> None:
    # The outer report's block is about the sender's own return path (its bounce mailbox was
    # full): no recipient's failure. Charged, the VERP path itself was recorded as a bounced
    # address with the bounce mailbox's 5.2.2.
    items, rejected = message_items(
        _double_bounce("alice@example.com"), source="bounces.mbox", position="0", now=NOW
    )
    assert [(i.recipient, i.position, str(i.reply.status)) for i in items if i.reply] == [
        ("alice@example.com", "0#1", "5.1.1")
    ]
    assert rejected is not None
    assert "bounce of a bounce" in rejected.error
    assert "bounces+alice=example.com@lists.example.org" in rejected.error


def test_a_bounce_of_a_bounce_keeps_the_one_recipient_verp_rule_for_the_bounce_it_returns() -> None:
    # The returned bounce is about the mailbox the subscriber's address forwards to; the outer
    # report names the VERP path the bounce was sent to, which names the subscriber.
    [record, inner] = parse_message(_double_bounce("alice.smith@othermail.example"))
    assert (record.recipient, record.bounce_of_bounce) == (
        "bounces+alice=example.com@lists.example.org",
        True,
    )
    assert not inner.bounce_of_bounce
    assert (inner.recipient, inner.verp_recipient) == (
        "alice.smith@othermail.example",
        "alice@example.com",
    )
    items, _ = message_items(
        _double_bounce("alice.smith@othermail.example"),
        source="bounces.mbox",
        position="0",
        now=NOW,
    )
    assert [i.recipient for i in items] == ["alice@example.com"]
