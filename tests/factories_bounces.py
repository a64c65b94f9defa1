"""Bounce messages for the tests that feed the nightly job or `message_items` (RFC 3464)."""

from __future__ import annotations

from datetime import datetime


def dsn(
    at: datetime,
    action: str,
    status: str,
    diagnostic: str | None,
    message_id: str,
    recipient: str = "reader@bigmail.example",
) -> str:
    """An RFC 3464 report from the sender's relay about `recipient`, as an mbox message (its
    "From " line first): `action` (delayed, failed), `status` (4.4.7), the remote server's reply
    as a Diagnostic-Code when given, and the Message-ID of the message it reports on."""
    diagnostic_line = f"Diagnostic-Code: smtp; {diagnostic}\n" if diagnostic else ""
    return (
        f"From MAILER-DAEMON {at:%a %b %d %H:%M:%S %Y}\n"
        "From: MAILER-DAEMON@relay.example.com\n"
        "To: bounces@example.com\n"
        f"Date: {at:%a, %d %b %Y %H:%M:%S +0000}\n"
        "Subject: Delivery Status Notification\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\n'
        "\n"
        "--BB\n"
        "Content-Type: text/plain\n"
        "\n"
        "Your message could not be delivered yet.\n"
        "\n"
        "--BB\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; relay.example.com\n"
        "\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.bigmail.example\n"
        f"{diagnostic_line}"
        "\n"
        "--BB\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        f"Message-ID: {message_id}\n"
        "Subject: Weekly news\n"
        "\n"
        "--BB--\n"
        "\n"
    )
