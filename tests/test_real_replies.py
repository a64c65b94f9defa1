"""Real SMTP replies from the big mailbox providers, filtering services and MTAs, each with the
verdict the shipped policy must give it.

Sources: the providers' public postmaster pages (cited above each group) and the
Diagnostic-Code lines of the Sisimai project's public set-of-emails collection, which the
`corpus` ids name by file (`corpus-lhost-postfix-30` is `lhost-postfix-30.eml`). Reply texts are
quoted as servers send them, with addresses and IPs replaced by documentation values where the
original carried personal ones. This test does not read the corpus itself.

The expected verdicts follow the project's rules (DESIGN.md, issue 2): a block for the sender's
reputation, authentication or policy is `blocked` with fault `sender`, never a hard bounce; rate
limits and 421 replies are `deferred` with fault `destination`; the "user unknown" family is
`bounced`, fault `recipient`, and `decisive` says whether the evidence alone may suppress the
address (an enhanced code such as 5.1.1 or an explicit "no such user" text) or not (a bare 550,
"mailbox unavailable"). `decisive` is None for every outcome but `bounced`, where it must be
False.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from deliverability.classify import classify
from deliverability.hygiene import Evidence, evidence_of, is_sender_deferral
from deliverability.policy import check_shipped_files, default_policy
from deliverability.replies import parse_reply
from deliverability.verdicts import Verdict
from deliverability.vocabulary import Fault, Outcome, Reason

PROVIDER_RULES = (
    Path(__file__).resolve().parents[1] / "deliverability" / "data" / "provider_rules.toml"
)


class Case(NamedTuple):
    id: str
    reply: str
    verdict: str  # "outcome/reason/fault", the enum values
    decisive: bool | None


C = Case

CASES: list[Case] = [
    # --- Gmail / Google Workspace -------------------------------------------------------------
    # https://support.google.com/a/answer/3726730 (Gmail SMTP errors and codes),
    # https://support.google.com/mail/answer/81126 (email sender guidelines)
    C(
        "gmail-no-such-user-multiline",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        "550-5.1.1 unnecessary spaces. Learn more at\r\n"
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123456qkb.12 - gsmtp",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "gmail-no-such-user-postfix-log",
        "host gmail-smtp-in.l.google.com[192.0.2.27] said: 550-5.1.1 The email account that you "
        "tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email "
        "address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 "
        "https://support.google.com/mail/?p=NoSuchUser x5si1234567pgq.55 - gsmtp "
        "(in reply to RCPT TO command)",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "gmail-account-disabled",
        "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
        "550 5.2.1 https://support.google.com/mail/?p=DisabledUser z1si99999pfa.2 - gsmtp",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "gmail-account-inactive",
        "550 5.2.1 The email account that you tried to reach is inactive. For more information, "
        "go to https://support.google.com/mail/?p=DisabledUser",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "gmail-over-quota-temporary",
        "452-4.2.2 The recipient's inbox is out of storage space. Please direct the\n"
        "452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "gmail-over-quota-452-account",
        "452 4.2.2 The email account that you tried to reach is over quota. Please direct the "
        "recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "gmail-over-quota-552",
        "552 5.2.2 The email account that you tried to reach is over quota. - gsmtp",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "gmail-receiving-too-quickly",
        "450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please\n"
        "450-4.2.1 resend your message at a later time. If the user is able to receive\n"
        "450-4.2.1 mail at that time, your message will be delivered. For more\n"
        "450 4.2.1 information, visit https://support.google.com/mail/?p=ReceivingRate - gsmtp",
        "deferred/rate_limited/recipient",
        None,
    ),
    C(
        "gmail-receiving-rate-prevents",
        "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered. Please resend your message at a later time. "
        "If the user is able to receive mail at that time, your message will be delivered. "
        "https://support.google.com/mail/?p=ReceivingRatePerm - gsmtp",
        "deferred/rate_limited/recipient",
        None,
    ),
    C(
        "gmail-receiving-rate-prevents-550",
        "550-5.2.1 The user you are trying to contact is receiving mail at a rate that\n"
        "550 5.2.1 prevents additional messages from being delivered. - gsmtp",
        "deferred/rate_limited/recipient",
        None,
    ),
    C(
        "gmail-unsolicited-rate-limited-421",
        "421-4.7.0 [192.0.2.10      15] Our system has detected an unusual rate of\n"
        "421-4.7.0 unsolicited mail originating from your IP address. To protect our\n"
        "421-4.7.0 users from spam, mail sent from your IP address has been temporarily\n"
        "421-4.7.0 rate limited. Please visit\n"
        "421-4.7.0  https://support.google.com/mail/?p=UnsolicitedRateLimitError to\n"
        "421 4.7.0 review our Bulk Email Senders Guidelines. q12si1234ejx.3 - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-unusual-rate-4-7-28",
        "421-4.7.28 Gmail has detected an unusual rate of mail originating from your DKIM domain "
        "example.com. To protect our users from spam, mail has been temporarily rate limited. "
        "421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-unsolicited-blocked-5-7-1",
        "550-5.7.1 [192.0.2.10] Our system has detected an unusual rate of\n"
        "550-5.7.1 unsolicited mail originating from your IP address. To protect our\n"
        "550-5.7.1 users from spam, mail sent from your IP address has been blocked.\n"
        "550-5.7.1 Please visit\n"
        "550-5.7.1  https://support.google.com/mail/?p=UnsolicitedIPError\n"
        "550 5.7.1 to review our Bulk Email Senders Guidelines. u66si15473913qki.107 - gsmtp",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "gmail-unsolicited-blocked-5-7-28",
        "550 5.7.28 There is an unusual rate of unsolicited mail originating from your IP address. "
        "To protect our users from spam, mail sent from your IP address has been blocked. - gsmtp",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "gmail-low-reputation-ip-blocked",
        "550-5.7.1 [192.0.2.22      18] Our system has detected that this message is\n"
        "550-5.7.1 likely suspicious due to the very low reputation of the sending IP\n"
        "550-5.7.1 address. To best protect our users from spam, the message has been\n"
        "550-5.7.1 blocked. Please visit\n"
        "550 5.7.1  https://support.google.com/mail/answer/188131 for more information. - gsmtp",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "gmail-low-reputation-domain-blocked",
        "550-5.7.1 Our system has detected that this message is likely suspicious due to the "
        "very low reputation of the sending domain. To best protect our users from spam, the "
        "message has been blocked. - gsmtp",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "gmail-low-reputation-rate-limited",
        "421-4.7.0 This message is suspicious due to the very low reputation of the sending IP "
        "address. To protect our users from spam, mail sent from your IP address has been "
        "temporarily rate limited. - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-likely-unsolicited-message",
        "550-5.7.1 [192.0.2.10      12] Our system has detected that this message is\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
        "550-5.7.1 this message has been blocked. Please visit\n"
        "550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError - gsmtp",
        "blocked/spam_detected/sender",
        None,
    ),
    C(
        "gmail-suspicious-content-links",
        "421-4.7.0 This message is suspicious due to the nature of the content or the links "
        "within. To best protect our users from spam, the message has been blocked. - gsmtp",
        "deferred/spam_detected/sender",
        None,
    ),
    C(
        "gmail-unauthenticated-5-7-26",
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
        "requires all senders to authenticate with either SPF or DKIM. Authentication results: "
        "DKIM = did not pass SPF [example.com] with ip: [192.0.2.1] = did not pass - gsmtp",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmail-unauthenticated-rate-limited-4-7-26",
        "421-4.7.26 This mail has been rate limited because it is unauthenticated. Gmail requires "
        "all senders to authenticate with either SPF or DKIM. - gsmtp",
        "deferred/auth_failure/sender",
        None,
    ),
    C(
        "gmail-dmarc-policy",
        "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n"
        "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain\n"
        "550 5.7.26 if this was a legitimate mail. - gsmtp",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmail-spf-hard-fail",
        "550-5.7.26 This message fails to pass SPF checks for an SPF record with a hard fail "
        "policy (-all). To best protect our users from spam and phishing, the message has been "
        "blocked. - gsmtp",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmail-no-authentication-information",
        "550-5.7.26 This message does not have authentication information or fails to pass "
        "authentication checks (SPF or DKIM). To best protect our users from spam, the message "
        "has been blocked. - gsmtp",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmail-spf-rate-limited-4-7-27",
        "421-4.7.27 Your email has been rate limited because SPF authentication didn't pass for "
        "this message. Gmail requires all bulk email senders to authenticate their email with "
        "SPF. - gsmtp",
        "deferred/auth_failure/sender",
        None,
    ),
    C(
        "gmail-dkim-rate-limited-4-7-30",
        "421-4.7.30 Your email has been rate limited because DKIM authentication didn't pass for "
        "this message. Gmail requires all email bulk senders to authenticate their email with "
        "DKIM. - gsmtp",
        "deferred/auth_failure/sender",
        None,
    ),
    C(
        "gmail-dmarc-alignment-4-7-32",
        "421-4.7.32 Your email has been rate limited because the From: header (RFC5322) in this "
        "message isn't aligned with either the authenticated SPF or DKIM organizational domain. "
        "- gsmtp",
        "deferred/auth_failure/sender",
        None,
    ),
    C(
        "gmail-unauthenticated-domain-5-7-1",
        "550 5.7.1 Unauthenticated email is not accepted from this domain. - gsmtp",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmail-missing-ptr-5-7-25",
        "550-5.7.25 [2001:db8::25] The IP address sending this message does not have a\n"
        "550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not\n"
        "550-5.7.25 point to the sending IP. As a policy, Gmail does not accept messages\n"
        "550 5.7.25 from IPs with missing PTR records. - gsmtp",
        "blocked/require_ptr/sender",
        None,
    ),
    C(
        "gmail-ipv6-ptr-guidelines",
        "550-5.7.1 [2001:db8::11] Our system has detected that this message does not 550-5.7.1 "
        "meet IPv6 sending guidelines regarding PTR records and authentication 550-5.7.1 . "
        "Please review 550-5.7.1 https://support.google.com/mail/?p=ipv6_authentication_error "
        "for more 550 5.7.1 information. t26si2290895yhl.255 - gsmtp",
        "blocked/require_ptr/sender",
        None,
    ),
    C(
        "gmail-missing-ptr-rate-limited-4-7-23",
        "421-4.7.23 The sending IP address for this message doesn't have a PTR record, or the PTR "
        "record's forward DNS entry doesn't match the sending IP address. To protect users from "
        "spam, your email has been temporarily rate limited. - gsmtp",
        "deferred/require_ptr/sender",
        None,
    ),
    C(
        "gmail-tls-required",
        "421 4.7.0 TLS required for RCPT domain, closing connection. - gsmtp",
        "deferred/security_error/sender",
        None,
    ),
    C(
        "gmail-ip-not-in-allowlist",
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection. - gsmtp",
        "deferred/policy_violation/sender",
        None,
    ),
    C(
        "gmail-try-again-later-closing",
        "421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-temporary-system-problem",
        "421 4.3.0 Temporary System Problem. Try again later. - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-temporary-system-problem-4-7-0",
        "421 4.7.0 Temporary System Problem. Try again later. - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-server-busy",
        "421 4.4.5 Server busy, try again later. - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-temporarily-rejected",
        "451 4.3.0 Mail server temporarily rejected message. - gsmtp",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "gmail-timeout",
        "451 4.4.2 Timeout - closing connection. - gsmtp",
        "deferred/network_error/network",
        None,
    ),
    C(
        "gmail-too-many-recipients",
        "452 4.5.3 Your message has too many recipients. For more information regarding Google's "
        "sending limits, visit https://support.google.com/mail/?p=TooManyRecipientsError - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-message-too-large",
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit\n"
        "552 5.2.3 https://support.google.com/mail/?p=MaxSizeError - gsmtp",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "gmail-recipient-domain-not-found",
        "553-5.1.2 We weren't able to find the recipient domain. Please check for any\n"
        "553-5.1.2 spelling errors, and make sure you didn't enter any spaces, periods,\n"
        "553 5.1.2 or other punctuation after the recipient's email address. - gsmtp",
        "bounced/host_unknown/domain",
        True,
    ),
    C(
        "gmail-malformed-message",
        "554 5.6.0 Mail message is malformed. Not accepted. - gsmtp",
        "blocked/not_compliant_rfc/message",
        None,
    ),
    C(
        "gmail-missing-message-id",
        "550-5.7.1 Messages missing a valid Message-ID: header are not accepted. For more "
        "information, go to https://support.google.com/mail/?p=RfcMessageNonCompliant - gsmtp",
        "blocked/not_compliant_rfc/message",
        None,
    ),
    C(
        "gmail-duplicate-headers",
        "550-5.7.1 This message is not RFC 5322 compliant because it has duplicate headers. To "
        "reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp",
        "blocked/not_compliant_rfc/message",
        None,
    ),
    C(
        "gmail-security-content",
        "552-5.7.0 This message was blocked because its content presents a potential\n"
        "552-5.7.0 security issue. Please visit\n"
        "552 5.7.0 https://support.google.com/mail/?p=BlockedMessage to review our message "
        "content and attachment content guidelines. - gsmtp",
        "blocked/policy_violation/message",
        None,
    ),
    C(
        "gmail-domain-policy-prohibited",
        "550-5.7.1 The user or domain that you are sending to (or from) has a policy that\n"
        "550 5.7.1 prohibited the mail that you sent. Please contact your domain administrator "
        "for further details. - gsmtp",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "gmail-custom-domain-policy-gcdp",
        "550 5.7.1 This message violates example.com email policy. - gcdp a1b2c3 - gsmtp",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "gmail-workspace-relay-denied",
        "550 5.7.0 Mail relay denied [192.0.2.1]. Invalid credentials for relay for one of the "
        "domains in: example.com (as obtained from HELO and MAIL FROM). - gsmtp",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "gmail-ip-not-authorized-directly",
        "550-5.7.1 [192.0.2.1] The IP you're using to send mail is not authorized to send "
        "email directly to our servers. Please use the SMTP relay at your service provider "
        "instead. Learn more at https://support.google.com/mail/?p=NotAuthorizedError - gsmtp",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "gmail-domain-policy-size",
        "452-4.5.3 Domain policy size per transaction exceeded, please try this recipient in a "
        "separate transaction. - gsmtp",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "gmail-starttls-first",
        "530 5.7.0 Must issue a STARTTLS command first. - gsmtp",
        "blocked/security_error/sender",
        None,
    ),
    # --- Outlook.com / Microsoft 365 / Exchange -------------------------------------------------
    # https://learn.microsoft.com/en-us/exchange/troubleshoot/email-delivery/ndr/non-delivery-reports-in-exchange-online
    # https://sendersupport.olc.protection.outlook.com/pm/troubleshooting.aspx
    C(
        "outlook-block-list-s3150",
        "550 5.7.1 Unfortunately, messages from [192.0.2.44] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150). You "
        "can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. "
        "[DB3EUR04FT007.eop-eur04.prod.protection.outlook.com]",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "outlook-block-list-s3140-postfix-log",
        "host eur.olc.protection.outlook.com[192.0.2.99] said: 550 5.7.1 Unfortunately, messages "
        "from [192.0.2.44] weren't sent. Please contact your Internet service provider since part "
        "of their network is on our block list (S3140). You can also refer your provider to "
        "http://mail.live.com/mail/troubleshooting.aspx#errors. "
        "[DM6NAM12FT056.eop-nam12.prod.protection.outlook.com] (in reply to MAIL FROM command)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "hotmail-sc-001-block-list",
        "550 SC-001 (BAY004-MC4F49) Unfortunately, messages from 192.0.2.44 weren't sent. Please "
        "contact your Internet service provider since part of their network is on our block list. "
        "You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "hotmail-rp-001-hourly-limits",
        "421 RP-001 (BAY004-MC1F33) Unfortunately, some messages from 192.0.2.44 weren't sent. "
        "Please try again. We have limits for how many messages can be sent per hour and per day. "
        "You can also refer to http://mail.live.com/mail/troubleshooting.aspx#errors.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "outlook-banned-sending-ip-5-7-606",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.222]. To request removal from this "
        "list please visit https://sender.office.com/ and follow the directions. For more "
        "information please go to  http://go.microsoft.com/fwlink/?LinkID=526655 (AS16012609)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "outlook-banned-sender-5-7-511",
        "550 5.7.511 Access denied, banned sender[192.0.2.44]. To request removal from this list "
        "please forward this message to delist@messaging.microsoft.com. For more information "
        "please go to http://go.microsoft.com/fwlink/p/?LinkId=526653. (AS16012607)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "outlook-customer-block-list-5-7-513",
        "550 5.7.513 Service unavailable, Client host [192.0.2.44] blocked by example.com using "
        "Customer Block list (AS16012607)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "outlook-rate-limited-ip-reputation",
        "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP "
        "reputation. For e-mail delivery information, see https://postmaster.live.com (S775) "
        "[AM0PR02MB1234.eurprd02.prod.outlook.com]",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "outlook-server-busy-4-7-500",
        "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77714) "
        "[BL6PEPF0001AB50.namprd04.prod.outlook.com 2024-07-14T14:44:43.083Z 08DCA36F759CD546]",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "outlook-dbeb-access-denied-5-4-1",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[DB5EUR03FT040.eop-EUR03.prod.protection.outlook.com]",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "outlook-mailbox-unavailable-5-5-0",
        "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
        "[VI1EUR04FT047.eop-eur04.prod.protection.outlook.com]",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "exchange-recipient-not-found-postfix-log",
        "host example-com.mail.protection.outlook.com[192.0.2.12] said: 550 5.1.10 "
        "RESOLVER.ADR.RecipientNotFound; Recipient user@example.com not found by SMTP address "
        "lookup (in reply to RCPT TO command)",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "exchange-ex-recip-not-found",
        "550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "outlook-no-ipv6-5-7-510",
        "550 5.7.510 Access denied, example.com does not accept email over IPv6",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "outlook-rejected-by-recipient-5-7-507",
        "550 5.7.507 Access denied, rejected by recipient",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "outlook-suspicious-activity-4-7-5xx",
        "451 4.7.550 Access denied, please try again later",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "office365-spamhaus",
        "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus. To "
        "request removal from this list see https://www.spamhaus.org/query/ip/192.0.2.1 (AS3130)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "outlook-dmarc-5-7-509",
        "550 5.7.509 Access denied, sending domain EXAMPLE.COM does not pass DMARC verification "
        "and has a DMARC policy of reject.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "outlook-authentication-level-5-7-515",
        "550 5.7.515 Access denied, sending domain EXAMPLE.COM doesn't meet the required "
        "authentication level. The sender's domain in the 5322.From address doesn't meet the "
        "authentication requirements defined for the sender.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "outlook-spf-violation-5-7-23",
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "exchange-restricted-group",
        "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "exchange-not-authorized",
        "550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "exchange-hop-count-exceeded",
        "554 5.4.14 Hop count exceeded - possible mail loop ATTR34 "
        "[SN1NAM02FT013.eop-nam02.prod.protection.outlook.com]",
        "blocked/network_error/destination",
        None,
    ),
    C(
        "exchange-quota-exceeded",
        "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
        "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent "
        "exception with message Cannot open mailbox.",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "exchange-insufficient-resources",
        "452 4.3.1 Insufficient system resources",
        "deferred/system_full/destination",
        None,
    ),
    C(
        "exchange-dns-domain-does-not-exist",
        "550 5.4.310 DNS domain example.invalid does not exist [Message=InfoDomainNonexistent] "
        "[LastAttemptedServerName=example.invalid] [DM6PR01MB1234.prod.exchangelabs.com]",
        "bounced/host_unknown/domain",
        True,
    ),
    C(
        "exchange-connection-dropped",
        '451 4.4.0 Primary target IP address responded with: "421 4.4.2 Connection dropped due '
        'to SocketError." Attempted failover to alternate host, but that did not succeed.',
        "deferred/network_error/network",
        None,
    ),
    # Exchange's front end when it cannot pass the message on to a back-end server (the PRX code
    # names the step that failed): https://smtpfieldmanual.com/spamfilter/exchangeonline lists
    # PRX4 among Exchange Online Protection's replies; https://c7solutions.com/category/error
    # traces PRX2 on Exchange Server 2016 to its DNS lookups.
    C(
        "exchange-temporary-server-error-prx4",
        "451 4.7.0 Temporary server error. Please try again later. PRX4",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "exchange-temporary-server-error-prx2",
        "451 4.7.0 Temporary server error. Please try again later. PRX2",
        "deferred/system_error/destination",
        None,
    ),
    # --- Yahoo / AOL ------------------------------------------------------------------------------
    # https://senders.yahooinc.com/smtp-error-codes/ (formerly postmaster.yahooinc.com/error-codes)
    C(
        "yahoo-tss04-volume-or-complaints",
        "421 4.7.0 [TSS04] Messages from 192.0.2.192 temporarily deferred due to unexpected volume "
        "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-tss04-postfix-log",
        "host mta5.am0.yahoodns.net[192.0.2.5] said: 421 4.7.0 [TSS04] Messages from 192.0.2.25 "
        "temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see "
        "https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-ts01-complaints",
        "421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - "
        "4.16.55.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-ts02-complaints",
        "421 4.7.0 [TS02] Messages from 192.0.2.1 temporarily deferred due to user complaints - "
        "4.16.56.1; see https://help.yahoo.com/kb/postmaster/SLN3434.html",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-tss02-unverified",
        "421 4.7.0 [TSS02] Messages from 192.0.2.1 temporarily deferred due to user complaints "
        "or because the IP/domain is in the unverified category. Please make sure that your email "
        "is RFC-5321 compliant. ec=ax9 [16]",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-max-messages-per-connection",
        "421 Max message per connection reached, closing transmission channel",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-relaying-denied",
        "550 relaying denied for <someone@yahoo.com>",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "yahoo-gl01-deferred",
        "421 4.7.0 [GL01] Message from (192.0.2.1) temporarily deferred - 4.16.50. Please refer to "
        "http://postmaster.yahoo.com/errors/postmaster-21.html",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "yahoo-ts03-permanently-deferred-421",
        "421 4.7.1 [TS03] All messages from 192.0.2.1 will be permanently deferred; Retrying will "
        "NOT succeed. See https://help.yahoo.com/kb/postmaster/SLN3436.html",
        "deferred/bad_reputation/sender",
        None,
    ),
    C(
        "yahoo-tss09-permanently-deferred-553",
        "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred; Retrying "
        "will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "yahoo-bl21-spamhaus",
        "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.25, because the ip is in "
        "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "yahoo-bl23-spamhaus-xbl",
        "553 5.7.1 [BL23] Connections not accepted from IP addresses on Spamhaus XBL; see "
        "http://postmaster.yahoo.com/errors/550-bl23.html [550]",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "yahoo-policy-5-7-9",
        "554 5.7.9 Message not accepted for policy reasons. See "
        "https://postmaster.yahooinc.com/error-codes",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "yahoo-ph01-policy",
        "554 Message not allowed - [PH01] Email not accepted for policy reasons. Please visit "
        "https://postmaster.yahooinc.com/error-codes",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "yahoo-unauthenticated",
        "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
        "requires all senders to authenticate with either SPF or DKIM.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "yahoo-unresolvable-from-domain",
        "451 Message temporarily deferred due to unresolvable RFC.5321 from domain; see "
        "https://senders.yahooinc.com/error-codes#unresolvable-from-domain",
        "deferred/rejected/sender",
        None,
    ),
    C(
        "yahoo-no-such-account",
        "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) "
        "[0] - mta1061.mail.ne1.yahoo.com",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "aol-no-such-account",
        "554 delivery error: dd This user doesn't have a aol.com account (someone@aol.com) "
        "[0] - mta1234.mail.gq1.yahoo.com",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "yahoo-mailbox-not-found-552",
        "552 1 Requested mail action aborted, mailbox not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "yahoo-mailbox-full-552",
        "552 1 Requested mail action aborted, mailbox full",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "yahoo-mailbox-disabled",
        "554 30 Sorry, your message to someone@aol.jp cannot be delivered. This mailbox is "
        "disabled (554.30)",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "yahoo-no-longer-valid",
        "554 delivery error: dd someone@yahoo.com is no longer valid. [-20] - "
        "mta4321.mail.bf1.yahoo.com",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "yahoo-user-receiving-too-quickly",
        "450 User is receiving mail too quickly",
        "deferred/rate_limited/recipient",
        None,
    ),
    C(
        "aol-rtr-bl",
        "554 5.7.1 : (RTR:BL) http://postmaster.info.aol.com/errors/554rtrbl.html",
        "blocked/blocked/sender",
        None,
    ),
    # --- iCloud / Apple
    # https://support.apple.com/en-us/102322 (postmaster information for iCloud Mail, was HT204137)
    C(
        "icloud-cs01-local-policy",
        "550 5.7.1 [CS01] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "icloud-hm08-local-policy",
        "554 5.7.1 [HM08] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "icloud-hm07-local-policy",
        "554 5.7.1 [HM07] Message rejected due to local policy. Please visit "
        "https://support.apple.com/en-us/HT204137",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "icloud-deferred-excessive-volume",
        "421 4.7.1 Messages to someone@icloud.com deferred due to excessive volume. Try again "
        "later - https://support.apple.com/en-us/HT204137",
        "deferred/rate_limited/recipient",
        None,
    ),
    C(
        "icloud-service-unavailable",
        "451 4.7.1 Service unavailable - try again later",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "icloud-user-does-not-exist",
        "550 5.1.1 <someone@icloud.com>: user does not exist",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "icloud-spamhaus-dbl-domain",
        "550 5.7.1 Your email was rejected due to having a domain present in the Spamhaus DBL -- "
        "see https://www.spamhaus.org/dbl/",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "icloud-dmarc",
        "550 5.7.1 Your message was rejected due to example.com's DMARC policy. See "
        "https://support.apple.com/en-us/HT204137",
        "blocked/auth_failure/sender",
        None,
    ),
    # --- GMX / web.de / mail.com (United Internet)
    # https://postmaster.gmx.net/en/error-messages, https://postmaster.web.de/en/error-messages
    C(
        "gmx-ip-block-listed",
        "554-gmx.net (mxgmx104) Nemesis ESMTP Service not available\n"
        "554-No SMTP service\n"
        "554-IP address is block listed.\n"
        "554 For explanation visit https://postmaster.gmx.net/en/case?c=r0201&i=ip&v=192.0.2.42",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "gmx-ip-black-listed",
        "554-gmx.net (mxgmx007) Nemesis ESMTP Service not available 554-No SMTP service "
        "554-IP address is black listed. 554 For explanation visit "
        "http://postmaster.gmx.com/en/error-messages?ip=192.0.2.7&c=bl",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "webde-policy-restrictions",
        "554-web.de (mxweb112) Nemesis ESMTP Service not available 554-No SMTP service "
        "554-Reject due to policy restrictions. 554 For explanation visit "
        "https://web.de/email/senderguidelines?ip=192.0.2.1&c=hi",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "gmx-spf-policy",
        "550 <someone@gmx.net>: Reject due to SPF policy. The originating IP of the message is "
        "not permitted by the domain owner",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "gmx-mailbox-unavailable",
        "550 <someone@gmx.de>: Requested action not taken: mailbox unavailable",
        "bounced/user_unknown/recipient",
        False,
    ),
    # --- Mail.ru --------------------------------------------------------------------------------
    # https://help.mail.ru/mail/postmaster (postmaster help: delivery errors)
    C(
        "mailru-user-not-found",
        "550 Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru is "
        "unavailable: user not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "mailru-account-disabled",
        "550 Message was not accepted -- invalid mailbox.  Local mailbox someone@mail.ru is "
        "unavailable: account is disabled",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "mailru-spam",
        "550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c="
        "AbCdEf or report details to abuse@corp.mail.ru. Error code: 1A2B3C4D.",
        "blocked/spam_detected/sender",
        None,
    ),
    # --- Yandex ---------------------------------------------------------------------------------
    # https://yandex.com/support/mail/web/spam/ (sender help: why mail was rejected)
    C(
        "yandex-no-such-user",
        "550 5.7.1 No such user!",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "yandex-suspicion-of-spam",
        "550 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc "
        "1617892222-abcdEFGH12-ab1cD2eF",
        "blocked/spam_detected/sender",
        None,
    ),
    C(
        "yandex-user-not-found",
        "550 5.1.1 User not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    # --- Comcast / Cox / Spectrum / AT&T / T-Online -----------------------------------------------
    # https://postmaster.comcast.net/smtp-error-codes.php
    C(
        "comcast-bl000000-spam-patterns",
        "554 resimta-po-12v.sys.comcast.net comcast 192.0.2.1 Comcast block for spam. Please see "
        "http://postmaster.comcast.net/smtp-error-codes.php#BL000000",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "comcast-bl000010-dnsbl",
        "554 resimta-ch2-18v.sys.comcast.net comcast 192.0.2.1 found on one or more DNSBLs, see "
        "http://postmaster.comcast.net/smtp-error-codes.php#BL000010",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "comcast-rl000001-rate-limit",
        "421 4.1.0 <bounce@example.com> Throttled - try again later. Please see "
        "https://postmaster.comcast.net/smtp-error-codes.php#RL000001",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "comcast-too-many-sessions",
        "421 imta07.westchester.pa.mail.comcast.net comcast Too many sessions opened",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "comcast-reverse-dns-failure",
        "421 resimta-ch2-02v.sys.comcast.net comcast 192.0.2.1 Reverse DNS failure : Try again "
        "later",
        "deferred/require_ptr/sender",
        None,
    ),
    C(
        "comcast-not-our-customer",
        "550 5.1.1 <someone@comcast.net> Not our Customer",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "att-dnsbl",
        "553 5.3.0 flpd576 DNSBL:RBL 521< 192.0.2.1 >_is_blocked.For assistance forward this "
        "error to abuse_rbl@abuse-att.net",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "tonline-ip-problem",
        "554 IP=192.0.2.1 - A problem occurred. (Ask your postmaster for help or to contact "
        "tosa@rx.t-online.de to clarify.)",
        "blocked/blocked/sender",
        None,
    ),
    # --- Zoho ----------------------------------------------------------------------------------
    # https://www.zoho.com/mail/help/adminconsole/ (bounce and rejection messages)
    C(
        "zoho-dmarc",
        "550 5.7.1 Email rejected per DMARC policy for example.com",
        "blocked/auth_failure/sender",
        None,
    ),
    # --- Proofpoint ------------------------------------------------------------------------------
    # https://ipcheck.proofpoint.com/ (Proofpoint Dynamic Reputation)
    C(
        "proofpoint-ipcheck-blocked",
        "554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    # --- Mimecast --------------------------------------------------------------------------------
    # https://community.mimecast.com/s/article/Mimecast-SMTP-Error-Codes-842605754
    C(
        "mimecast-anti-spoofing",
        "550 Rejected by header based Anti-Spoofing policy: someone@example.com - "
        "https://community.mimecast.com/docs/DOC-1369#550",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "mimecast-envelope-blocked",
        "550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "mimecast-administrative-prohibition",
        "550 Administrative prohibition - envelope blocked - "
        "https://community.mimecast.com/docs/DOC-1369#550",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "mimecast-greylisting",
        "451 Internal resource temporarily unavailable - "
        "https://community.mimecast.com/docs/DOC-1369#451",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "mimecast-invalid-recipient",
        "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "mimecast-security-policies",
        "554 Email rejected due to security policies - "
        "https://community.mimecast.com/docs/DOC-1369#554",
        "blocked/policy_violation/sender",
        None,
    ),
    # --- Barracuda --------------------------------------------------------------------------------
    # https://www.barracudacentral.org/rbl (Barracuda Reputation Block List)
    C(
        "barracuda-reputation",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using Barracuda "
        "Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "barracuda-central-bare-554",
        "554 Service unavailable; Client host [192.0.2.1] blocked using b.barracudacentral.org; "
        "http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "barracuda-recipient-blocked",
        "550 permanent failure for one or more recipients (someone@example.com:blocked)",
        "blocked/spam_detected/sender",
        None,
    ),
    # --- DNS blocklists (RFC 5782) ---------------------------------------------------------------
    # https://www.spamhaus.org/, https://www.spamcop.net/bl.shtml, Postfix and Exim default texts
    C(
        "spamhaus-zen-postfix",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "spamcop-postfix",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using bl.spamcop.net; "
        "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "sorbs-postfix",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using dnsbl.sorbs.net; "
        "Currently Sending Spam See: http://www.sorbs.net/lookup.shtml?192.0.2.1",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "spamhaus-dbl-sender-postfix",
        "554 5.7.1 Service unavailable; Sender address [bounce@example.com] blocked using "
        "dbl.spamhaus.org; https://www.spamhaus.org/query/domain/example.com",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "spamhaus-exim-black-list",
        "550 rejected because 192.0.2.1 is in a black list at zen.spamhaus.org",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "spamhaus-temporary-450",
        "450 4.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
        "https://www.spamhaus.org/query/ip/192.0.2.1",
        "deferred/blocked/sender",
        None,
    ),
    # --- Greylisting daemons ----------------------------------------------------------------------
    # postgrey (https://postgrey.schweikert.ch/), milter-greylist, rspamd, OpenBSD spamd
    C(
        "postgrey-greylisted",
        "450 4.2.0 <someone@example.com>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.com.html",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "postgrey-greylisted-postfix-log",
        "host mx.example.com[192.0.2.3] said: 450 4.2.0 <someone@example.com>: Recipient address "
        "rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html "
        "(in reply to RCPT TO command)",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "milter-greylist-come-back",
        "451 4.7.1 Greylisting in action, please come back in 00:05:00",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "greylisted-for-seconds",
        "450 4.7.1 <someone@example.com>: Recipient address rejected: Greylisted for 300 seconds",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "rspamd-try-again-later",
        "451 4.7.1 Try again later",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "greylist-please-try-again-later",
        "451 4.7.1 Please try again later",
        "deferred/greylisted/destination",
        None,
    ),
    C(
        "openbsd-spamd-temporary-failure",
        "451 Temporary failure, please try again later.",
        "deferred/greylisted/destination",
        None,
    ),
    # --- Postfix standard texts ------------------------------------------------------------------
    # https://www.postfix.org/postconf.5.html, https://www.postfix.org/ADDRESS_VERIFICATION_README.html
    C(
        "postfix-unknown-local-recipient",
        "550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in local "
        "recipient table",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "postfix-unknown-relay-recipient",
        "550 5.1.1 <someone@example.com>: Recipient address rejected: User unknown in relay "
        "recipient table",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "postfix-relay-access-denied",
        "554 5.7.1 <someone@example.net>: Relay access denied",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "postfix-recipient-domain-not-found-450",
        "450 4.1.2 <someone@example.invalid>: Recipient address rejected: Domain not found",
        "deferred/host_unknown/domain",
        None,
    ),
    C(
        "postfix-recipient-domain-not-found-550",
        "550 5.1.2 <someone@example.invalid>: Recipient address rejected: Domain not found",
        "bounced/host_unknown/domain",
        True,
    ),
    C(
        "postfix-cannot-find-hostname-450",
        "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
        "deferred/require_ptr/sender",
        None,
    ),
    C(
        "postfix-cannot-find-reverse-hostname-550",
        "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
        "blocked/require_ptr/sender",
        None,
    ),
    C(
        "postfix-sender-domain-not-found",
        "450 4.1.8 <bounce@example.invalid>: Sender address rejected: Domain not found",
        "deferred/rejected/sender",
        None,
    ),
    C(
        "postfix-sender-access-denied",
        "554 5.7.1 <bounce@example.com>: Sender address rejected: Access denied",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "postfix-sender-not-owned",
        "553 5.7.1 <someone@example.com>: Sender address rejected: not owned by user "
        "bounce@example.com",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "postfix-client-access-denied",
        "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "postfix-message-size",
        "552 5.3.4 Message size exceeds fixed limit",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "postfix-insufficient-storage",
        "452 4.3.1 Insufficient system storage",
        "deferred/system_full/destination",
        None,
    ),
    C(
        "postfix-too-many-recipients",
        "452 4.5.3 Error: too many recipients",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "postfix-anvil-too-many-connections",
        "421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "postfix-anvil-too-much-mail",
        "450 4.7.1 Error: too much mail from 192.0.2.1",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "postfix-temporary-lookup-failure",
        "451 4.3.0 <someone@example.com>: Temporary lookup failure",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "postfix-server-configuration-problem",
        "451 4.3.5 Server configuration problem",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "postfix-postscreen-unavailable",
        "450 4.3.2 Service currently unavailable",
        "deferred/not_accept/domain",
        None,
    ),
    # --- Exim / cPanel
    # https://www.exim.org/exim-html-current/doc/html/spec_html/ch-access_control_lists.html
    C(
        "exim-no-such-user-here",
        "550 No Such User Here",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "exim-unrouteable-address",
        "550 Unrouteable address",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "exim-sender-verify-failed",
        "550-Verification failed for <bounce@example.com>\n"
        "550-Unrouteable address\n"
        "550 Sender verify failed",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "exim-administrative-prohibition",
        "550 Administrative prohibition",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "exim-temporary-local-problem",
        "451 Temporary local problem - please try later",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "exim-too-many-concurrent-connections",
        "421 Too many concurrent SMTP connections; please try again later.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "cpanel-rate-limit",
        "451-The server has reached its limit for processing requests from your host.\n"
        "451 Please try again later.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "exim-after-rcpt-user-unknown",
        "SMTP error from remote mail server after RCPT TO:<someone@example.com>: host "
        "mx.example.com [192.0.2.3]: 550 5.1.1 <someone@example.com>: Recipient address "
        "rejected: User unknown in virtual mailbox table",
        "bounced/user_unknown/recipient",
        True,
    ),
    # --- Sendmail
    # https://www.sendmail.org/ (sendmail operations guide, error texts)
    C(
        "sendmail-user-unknown",
        "550 5.1.1 <someone@example.com>... User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "sendmail-relaying-denied",
        "550 5.7.1 <someone@example.net>... Relaying denied. IP name lookup failed [192.0.2.1]",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "sendmail-mailbox-disabled",
        "550 5.2.1 <someone@example.com>... Mailbox disabled for this recipient",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "sendmail-user-not-local",
        "551 5.1.6 <someone@example.com>... User not local; please try <someone@example.org>",
        "bounced/has_moved/recipient",
        True,
    ),
    C(
        "sendmail-insufficient-disk",
        "452 4.4.5 Insufficient disk space; try again later",
        "deferred/system_full/destination",
        None,
    ),
    C(
        "sendmail-read-error",
        "451 4.4.1 reply: read error from mx.example.com.",
        "deferred/network_error/network",
        None,
    ),
    C(
        "sendmail-service-shutting-down",
        "421 4.3.2 Service shutting down",
        "deferred/rate_limited/destination",
        None,
    ),
    # --- qmail / vpopmail
    # https://cr.yp.to/qmail.html (qmail-smtpd, qmail-remote), RFC 1893 codes in (#x.y.z)
    C(
        "qmail-no-mailbox",
        "550 Sorry, no mailbox here by that name. (#5.1.1)",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "vpopmail-no-mailbox",
        "550 Sorry, no mailbox here by that name. vpopmail (#5.1.1)",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "qmail-rcpthosts",
        "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "qmail-databytes",
        "552 sorry, that message size exceeds my databytes limit (#5.3.4)",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "qmail-temporary-problem",
        "451 qq temporary problem (#4.3.0)",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "qmail-no-host",
        "Sorry, I couldn't find any host named example.invalid. (#5.1.2)",
        "bounced/host_unknown/domain",
        True,
    ),
    C(
        "vpopmail-over-quota",
        "The users mailfolder is over the allowed quota (size). (#5.2.2)",
        "deferred/mailbox_full/recipient",
        None,
    ),
    # --- Amazon SES, SendGrid, Mailgun (relay replies to the sender)
    # https://docs.aws.amazon.com/ses/latest/dg/troubleshoot-error-messages.html,
    # https://www.twilio.com/docs/sendgrid/for-developers/sending-email/sender-identity,
    # https://documentation.mailgun.com/
    C(
        "ses-throttling-rate",
        "454 Throttling failure: Maximum sending rate exceeded.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "ses-throttling-daily-quota",
        "454 Throttling failure: Daily message quota exceeded.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "ses-identity-not-verified",
        "554 Message rejected: Email address is not verified. The following identities failed "
        "the check in region US-EAST-1: bounce@example.com",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "sendgrid-sender-identity",
        "550 The from address does not match a verified Sender Identity. Mail cannot be sent "
        "until this error is resolved. Visit https://sendgrid.com/docs/for-developers/"
        "sending-email/sender-identity/ to see the Sender Identity requirements",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "sendgrid-unauthenticated-senders",
        "550 Unauthenticated senders not allowed",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "mailgun-sandbox",
        "554 Sandbox subdomains are for test purposes only. Please add your own domain or add "
        "the address to authorized recipients in Account Settings.",
        "blocked/policy_violation/sender",
        None,
    ),
    # --- Delivery and informational replies -------------------------------------------------------
    C(
        "gmail-accepted",
        "250 2.0.0 OK  1700000000 a1-20020a170902000000b001234567890si1234567plb.12 - gsmtp",
        "delivered/delivered/unknown",
        None,
    ),
    C(
        "exchange-queued",
        "250 2.6.0 <id@example.com> [InternalId=12345678, Hostname=AM0PR02MB1234.eurprd02."
        "prod.outlook.com] Queued mail for delivery",
        "delivered/delivered/unknown",
        None,
    ),
    # --- Diagnostic-Code lines of the Sisimai set-of-emails corpus
    C(
        "corpus-lhost-amavis-01",
        "smtp; 550 5.1.1 <neko@example.co.jp>: Recipient address rejected: User unknown in "
        "virtual mailbox table",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-amavis-03",
        "smtp; 554 5.7.0 Reject, id=20025-09 - SPAM",
        "blocked/spam_detected/sender",
        None,
    ),
    C(
        "corpus-lhost-amazonses-01",
        "smtp; 5.1.0 - Unknown address error 550-'5.7.1 <000001321defbd2a-788e31c8-2be1-422f-"
        "a8d4-cf7765cc9ed7-000000@email-bounces.amazonses.com>... Access denied' (delivery "
        "attempts: 0)",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-lhost-amazonses-03",
        "smtp; 5.1.0 - Unknown address error 550-'5.2.2 <kijitora@example.jp>... Mailbox Full' "
        "(delivery attempts: 0)",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "corpus-lhost-amazonses-06",
        "smtp; 550 5.1.1 user unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-amazonses-08",
        "smtp; 550 5.7.9 Rejected",
        "blocked/security_error/sender",
        None,
    ),
    C(
        "corpus-lhost-amazonses-14",
        "smtp; 554 5.7.1 <a8-95.smtp-out.amazonses.com[203.0.113.22]>: Client host rejected: "
        "blocked using mail.neko.example.org; Please see "
        "http://mail.neko.example.org/rbl/?ip=203.0.113.22 to send.",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-amazonses-16",
        "smtp; 521-5.7.1 Service unavailable; client [203.0.113.225] blocked using "
        "dnsbl.sorbs.net\n 521 5.7.1 Please see "
        "http://support.mailhostbox.com/email-administrators-guide-error-codes/ for explanation "
        "of the problem.",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-amazonses-18",
        "smtp; 550 5.4.4 Invalid domain",
        "bounced/host_unknown/domain",
        False,
    ),
    C(
        "corpus-lhost-amazonses-20",
        "smtp; 550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
        " 550 5.2.1  https://support.google.com/mail/?p=DisabledUser 000000000000eee.000 - gsmtp",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-lhost-amazonworkmail-01",
        "smtp; 550 5.1.1 <kijitora@example.jp>... User Unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-amazonworkmail-03",
        "smtp; 550 5.3.5 <kuroneko@example.org>... Internal System Error",
        "blocked/system_error/destination",
        None,
    ),
    C(
        "corpus-lhost-amazonworkmail-05",
        "smtp; 554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection "
        "timed out>",
        "bounced/expired/unknown",
        False,
    ),
    C(
        "corpus-lhost-amazonworkmail-08",
        "smtp; 550 5.2.2 <kijitora@libsisimai.org>... Mailbox Full",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "corpus-lhost-barracuda-01",
        "smtp; 550 5.7.1 Message content rejected, UBE, id=00000-22-225",
        "blocked/spam_detected/sender",
        None,
    ),
    C(
        "corpus-lhost-bigfoot-02",
        "SMTP; 553 Invalid recipient kijitora@example.org (Mode: normal)",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-courier-03",
        "smtp; 550 5.7.1 can't determine Purported Responsible Address",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-exchange2007-01",
        "smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-exchange2007-03",
        "smtp;550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "corpus-lhost-exchange2007-05",
        "smtp;550 4.4.7 QUEUE.Expired; message expired",
        "bounced/expired/unknown",
        False,
    ),
    C(
        "corpus-lhost-exim-29",
        "smtp; 550 Bad SPF records for [example.org:192.0.2.2], see http://spf.pobox.com/",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-exim-43",
        "smtp; 550 5.7.1 Connections not accepted from servers without a valid sender domain. "
        "Fix reverse DNS for 203.0.113.2",
        "blocked/require_ptr/sender",
        None,
    ),
    C(
        "corpus-lhost-exim-49",
        "smtp; 550 Rejected",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "corpus-lhost-mcafee-01",
        "smtp; 550 Unknown user kijitora@example.co.jp",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-mcafee-05",
        "smtp; 550 <kijitora-nyaan@example.co.jp>... User not exist",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-messagingserver-03",
        "smtp; 550 5.7.1 550 User Unknown: sabineko@example.org",
        "bounced/user_unknown/recipient",
        # 5.7.x says the refusal is policy (RFC 3463 section 3.8): the words alone are not decisive.
        False,
    ),
    C(
        "corpus-lhost-messagingserver-09",
        "smtp;550 <otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp>: User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-messagingserver-11",
        "smtp;501 5.1.8 Sender address rejected",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "corpus-lhost-office365-03",
        "smtp;550 5.1.0 192.0.2.222 is not allowed to send from <example.net> per it's SPF "
        "Record. Please inspect your SPF settings, and try again. IB508  <http://x.co/srbounce>",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-office365-07",
        "smtp;550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 "
        "<otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp>: User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-office365-09",
        "smtp;550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 "
        "Unknown user azumakuniyuki@example.ne.jp",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-office365-13",
        "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
        "lookup",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-outlook-01",
        "smtp;550 5.2.2 <kijitora@example.jp>... Mailbox Full",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "corpus-lhost-outlook-03",
        "smtp;554 The mail could not be delivered to the recipient because the domain is not "
        "reachable. Please check the domain and try again (-1915321397:308:-2147467259)",
        "bounced/host_unknown/domain",
        False,
    ),
    C(
        "corpus-lhost-outlook-08",
        "smtp;550 Requested action not taken: mailbox unavailable (-0000000022:2222:-0000000022)",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "corpus-lhost-postfix-03",
        "smtp; 550 Unknown user kijitora@example.net",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-05",
        "smtp; 450 4.1.1 <kijitora@example.org>: Recipient address rejected: User unknown in "
        "virtual alias table",
        "deferred/user_unknown/recipient",
        None,
    ),
    C(
        "corpus-lhost-postfix-09",
        "smtp; 452 4.3.2 Connection rate limit exceeded.",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-lhost-postfix-11",
        "smtp; 553 5.1.8 <root@vagrant-centos65.vagrantup.com>... Domain of sender address "
        "root@vagrant-centos65.vagrantup.com does not exist",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-16",
        "smtp; 550 5.1.6 recipient no longer on server: kijitora@example.go.jp",
        "bounced/has_moved/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-28",
        "smtp; 550-5.7.1 [2401:2500:102:3032:192.0.2.222      13] Messages with multiple\n"
        " 550 5.7.1 addresses in From: header are not accepted. v14si1155795plk.134 - gsmtp",
        "blocked/not_compliant_rfc/message",
        None,
    ),
    C(
        "corpus-lhost-postfix-30",
        "smtp; 550 5.4.1 <kijitora@example.br>: Recipient address rejected: Access denied "
        "[BL2NAM02FT061.eop-nam02.prod.protection.outlook.com]",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-32",
        'smtp; 550 5.1.1 <"neko....nyaan...."@libsisimai.org>... User Unknown',
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-36",
        "smtp; 550 <otsu-sakaba-hunter-neko-nyaaaaaaan@ezweb.ne.jp>: User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-38",
        "smtp; 554 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.225",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-40",
        "smtp; 451 Could not load DRD for domain (example.com) rcpt (kijitora@example.com)",
        "deferred/system_error/destination",
        None,
    ),
    C(
        "corpus-lhost-postfix-42",
        "smtp; 550 Denied by policy",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-44",
        "X-Postfix; host nyaan.example.jp[192.0.2.2] said: 501 Rcpt-To validation failed: RCPT "
        "TO not accepted: 5.7.1 This system is not configured to relay mail (r) from "
        "<nekonyaans@p2.example.com> to <kijitora@example.jp> for 127.0.0.1 (in reply to RCPT TO "
        "command)",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-46",
        "smtp; 550 <neko-nyaan@ne.auone-net.jp>: Recipient address rejected.",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "corpus-lhost-postfix-48",
        "smtp; 552 Too many recipients",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-lhost-postfix-50",
        "X-Postfix; delivery temporarily suspended: host mfsmax.example.net[203.0.113.127] "
        "refused to talk to me: 421 Service not available, closing transmission channel",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-lhost-postfix-52",
        "smtp; 554 delivery error: dd Sorry your message to kijitora@example.co.jp cannot be "
        "delivered. This account has been disabled or discontinued [#102]. - "
        "mta222.mail.neko.example.co.jp",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-lhost-postfix-54",
        "smtp; 550 5.7.1 Access denied",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-58",
        "smtp; 550-5.7.1 [192.0.2.22      18] Our system has detected that this message is\n"
        " 550-5.7.1 likely suspicious due to the very low reputation of the sending IP\n"
        " 550-5.7.1 address. To best protect our users from spam, the message has been\n"
        " 550-5.7.1 blocked. Please visit\n"
        " 550 5.7.1  https://support.google.com/mail/answer/188131 for more information.",
        "blocked/bad_reputation/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-60",
        "smtp; 554-mail.com (mxgmxus002) Nemesis ESMTP Service not available\n"
        " 554-No SMTP service\n"
        " 554-Bad DNS PTR resource record.\n"
        " 554 For explanation visit http://postmaster.gmx.com/en/error-messages?ip=192.0.2.22&c=rdns",
        "blocked/require_ptr/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-62",
        "smtp; 550 Virus Detected; Content Rejected",
        "blocked/virus_detected/message",
        None,
    ),
    C(
        "corpus-lhost-postfix-66",
        "smtp; 554 5.7.9 Message not accepted for policy reasons. See "
        "https://postmaster.verizonmedia.com/error-codes",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-68",
        "smtp; 554 Message not allowed - 554 Message not allowed - DM Email not accepted for "
        "policy reasons. Please visit https://www.yahoo-help.jp/app/answers/detail/a_id/80870/p/"
        "622 [895]",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-70",
        "smtp; 550-5.7.26 Unauthenticated email from libsisimai.org is not accepted due to\n"
        " 550-5.7.26 domain's DMARC policy. Please contact the administrator of\n"
        " 550-5.7.26 libsisimai.org domain if this was a legitimate mail. Please visit\n"
        " 550-5.7.26  https://support.google.com/mail/answer/2451690 to learn about the\n"
        " 550 5.7.26 DMARC initiative.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-72",
        "smtp; 550 5.7.1 This message was not accepted due to domain (libsisimai.org) owner "
        "DMARC policy (RFC 7489) https://help.mail.ru/mail-help/postmaster/dmarc",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-postfix-76",
        "smtp; 550 User not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-postfix-78",
        "smtp; 554 Transaction failed: Duplicate header 'DKIM-Signature'.",
        "blocked/not_compliant_rfc/message",
        None,
    ),
    C(
        "corpus-lhost-postfix-80",
        "smtp; 550-5.1.0 MXIN506 MailFrom domain is listed in Spamhaus. To request removal from "
        "this list see https:\n 550 5.1.0 //www.spamhaus.org/query/lookup/ ;id=DLOkvMxsVeZoo",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-powermta-01",
        "smtp;550 5.2.1 <kijitora@example.jp>... User Unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-receivingses-01",
        "smtp; 550 5.1.1 Mailbox does not exist",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-receivingses-03",
        "smtp; 450 4.0.0 Temporary failure",
        "deferred/undefined/recipient",
        None,
    ),
    C(
        "corpus-lhost-receivingses-05",
        "smtp; 552 5.3.4 Message too large",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "corpus-lhost-receivingses-07",
        "smtp; 550 5.2.0 Message Filtered",
        "blocked/filtered/recipient",
        None,
    ),
    C(
        "corpus-lhost-sendmail-05",
        "SMTP; 552 5.2.3 Message size exceeds fixed maximum message size (10485760)",
        "blocked/email_too_large/message",
        None,
    ),
    C(
        "corpus-lhost-sendmail-07",
        "SMTP; 554 5.7.1 <kijitora@example.org>: Relay access denied",
        "blocked/no_relaying/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-09",
        "SMTP; 554 5.7.9 Header error",
        "blocked/security_error/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-17",
        "SMTP; 551 not our user",
        "bounced/has_moved/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-24",
        "SMTP; 550 Host unknown",
        "bounced/host_unknown/domain",
        True,
    ),
    C(
        "corpus-lhost-sendmail-26",
        "SMTP; 550 unknown user",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-32",
        "SMTP; 550 5.1.1 Requested action not taken: mailbox unavailable",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-34",
        "SMTP; 552-5.7.0 This message was blocked because its content presents a potential",
        "blocked/policy_violation/message",
        None,
    ),
    C(
        "corpus-lhost-sendmail-36",
        "SMTP; 550 5.7.1 IP address blacklisted by recipient",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-38",
        "SMTP; 550 5.7.1 message content rejected",
        "blocked/spam_detected/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-38-yahoo",
        "SMTP; 554 delivery error: dd This user doesn't have a y.example.com account "
        "(kijitora@y.example.com) [0] - mta1397.mail.mud.y.example.com",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-44",
        "SMTP; 552 5.6.0 Headers too large (3 max)",
        "blocked/content_error/message",
        None,
    ),
    C(
        "corpus-lhost-sendmail-46",
        "SMTP; 550 5.5.0 Adresse destinataire invalide. Invalid recipient. LPN007_416",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-48",
        "SMTP; 550 5.7.1 <pseudo-local-part-kijitora-nyaan@sfr.fr>: Recipient address rejected: "
        "User unknown",
        "bounced/user_unknown/recipient",
        # 5.7.x says the refusal is policy (RFC 3463 section 3.8): the words alone are not decisive.
        False,
    ),
    C(
        "corpus-lhost-sendmail-50",
        "SMTP; 550 : User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-sendmail-56",
        "SMTP; 554 st11p00im-smtpin013.me.com ESMTP not accepting connections",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-58",
        "SMTP; 550-5.7.1 Unauthenticated email from cpanel.com is not accepted due to domain's",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-sendmail-60",
        "SMTP; 550-5.7.26 The MAIL FROM domain [email.example.jp] has an SPF record with a hard "
        "fail",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-lhost-surfcontrol-01",
        "smtp; 550 kijitora@example.com... No such user",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-lhost-surfcontrol-03",
        "smtp; 554 Service currently unavailable",
        "blocked/undefined/unknown",
        None,
    ),
    C(
        "corpus-lhost-x3-06",
        "smtp; 552 5.2.2 Over quota",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "corpus-lhost-x5-01",
        "smtp; 550 5.1.1 User unknown",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-rfc3464-29",
        "smtp;503 Improper sequence of commands",
        "blocked/mailer_error/sender",
        None,
    ),
    C(
        "corpus-rfc3464-35",
        "smtp;  550 'kijitora@nyaan.example.com' is not a registered gateway user",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "corpus-rfc3464-51",
        "smtp; 550 #5.1.0 Address rejected.",
        "bounced/user_unknown/recipient",
        False,
    ),
    C(
        "corpus-rfc3464-63",
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        " 550-5.1.1 double-checking the recipient's email address for typos or\n"
        " 550-5.1.1 unnecessary spaces. Learn more at\n"
        " 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser y3si675602plr.1 - gsmtp",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-rhost-apple-03",
        "smtp; 552 5.2.2 <pseudo-local-part-of-apple-icloud-mail@icloud.com>: user is over quota",
        "deferred/mailbox_full/recipient",
        None,
    ),
    C(
        "corpus-rhost-apple-05",
        "smtp; 550 5.1.1 <test-of-zhzkndneko@privaterelay.appleid.com>: user not found",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-rhost-cloudflare-01",
        "smtp; 421 4.3.0 Upstream error, please check "
        "https://developers.cloudflare.com/email-routing/postmaster for possible reasons why. "
        "RsrUEMk60942",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-rhost-cox-01",
        "smtp; 550 5.1.0 <bounce@mailer.cnt1.example.com> sender rejected. Refer to Error Codes "
        "section at https://www.cox.com/residential/support/email-error-codes.html for more "
        "information. AUP#CDRBL",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-facebook-03",
        "smtp; 550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes?ip=192.0.2.135#rcp "
        "Refused due to recipient preferences",
        "blocked/filtered/recipient",
        None,
    ),
    C(
        "corpus-rhost-franceptt-01",
        "SMTP; 550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 "
        "[416]",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-rhost-franceptt-05",
        "smtp; 550 5.5.0 Le compte du destinataire est bloque. The recipient account is blocked. "
        "LPN007_426",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "laposte-archived-recipient",
        "550 5.5.0 Boite du destinataire archivee. Archived recipient. LPN007_420",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-rhost-franceptt-07",
        "smtp; 421 mwinf5c77 ME Service refuse. Veuillez essayer plus tard. Service refused, "
        "please try later. OFR_999 [999]",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-rhost-franceptt-10",
        "smtp; 550 5.5.0 Service refuse. Veuillez essayer plus tard. service refused, please try "
        "later. LPN001_108",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-franceptt-12",
        "smtp; 554 5.7.1 <xxxx.xxxx.net[192.0.2.9]:49309>: Client host rejected: #216 lpn "
        "LPN000_630",
        "blocked/policy_violation/sender",
        None,
    ),
    C(
        "corpus-rhost-godaddy-02",
        "SMTP; 553 http://www.spamhaus.org/query/bl?ip=192.0.2.222",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-google-01",
        "SMTP; 550 5.2.1 The email account that you tried to reach is disabled. g0000000000ggg.00",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-rhost-google-03",
        "smtp; 550-5.7.26 The MAIL FROM domain [mail4.example.com] has an SPF record with a\n"
        " 550-5.7.26 hard fail policy (-all) but it fails to pass SPF checks with the ip:\n"
        " 550-5.7.26 [192.0.2.24]. To best protect our users from spam and phishing,\n"
        " 550-5.7.26 the message has been blocked.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-rhost-google-05",
        "smtp; 552-5.2.2 The recipient's inbox is out of storage space and inactive. Please\n"
        " 552-5.2.2 direct the recipient to\n"
        " 552 5.2.2  https://support.google.com/mail/?p=OverQuotaPerm c2-202229zmZBNM3agi23.222 "
        "- gsmtp",
        "bounced/mailbox_full/recipient",
        False,
    ),
    C(
        "corpus-rhost-google-07",
        "SMTP; 550-5.2.1 The email account that you tried to reach is inactive. For more",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-rhost-gsuite-11",
        "smtp; 501 5.1.8 Sender address rejected",
        "blocked/rejected/sender",
        None,
    ),
    C(
        "corpus-rhost-iua-01",
        "smtp; 550 Mailbox is frozen. See http://mail.i.ua/err/3/",
        "bounced/suspend/recipient",
        False,
    ),
    C(
        "corpus-rhost-messagelabs-01",
        "smtp; 550-Please turn on SMTP Authentication in your mail client.",
        "blocked/security_error/sender",
        None,
    ),
    C(
        "corpus-rhost-microsoft-01",
        "SMTP; 550 5.7.606 Access denied, banned sending IP [198.51.100.222]. To request removal "
        "from this list please visit https://sender.office.com/ and follow the directions. For "
        "more information please go to  http://go.microsoft.com/fwlink/?LinkID=526655 "
        "(AS16012609)",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-microsoft-05",
        "smtp; 451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to "
        "IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3113) "
        "[5NY1SSJFSTZJRJBG.eurprd02.prod.outlook.com 2024-05-09T23:34:45.000Z GLXTWVLGZHZNHVXY]",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-rhost-mimecast-01",
        "smtp; 554 Host network not allowed - https://community.mimecast.com/docs/DOC-1369#554 "
        "[z7qZw5BPd1zlDYHka4589ru.us222]",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-spectrum-01",
        "smtp; 550 5.1.0 <010001725d8ad4fc-9fe8fb1f-0292-430b-a634-1eba65166dbb-000000@amazonses."
        "com> sender rejected. Please see https://www.spectrum.net/support/internet/"
        "understanding-email-error-codes for more information. AUP#In-1310",
        "blocked/blocked/sender",
        None,
    ),
    C(
        "corpus-rhost-tencent-01",
        "smtp; 550 Ip frequency limited [V2VkIEFwciAgMyAxNjozNjo1OSBKU1QgMjAxOQo=/RkNGMjlFQTVEQ0E "
        "Blocked IP 192.0.2.22]. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&"
        "no=1000725",
        "deferred/rate_limited/destination",
        None,
    ),
    C(
        "corpus-rhost-tencent-03",
        "smtp; 550 DMARC check failed. http://service.mail.qq.com/cgi-bin/help?subtype=1&&"
        "no=1001508&&id=16.",
        "blocked/auth_failure/sender",
        None,
    ),
    C(
        "corpus-rhost-yahooinc-03",
        "SMTP; 553 5.3.5 system config error",
        "blocked/system_error/destination",
        None,
    ),
    C(
        "corpus-rhost-zoho-01",
        "smtp; 550 5.1.1 User does not exist - <kijitora@zoho.example.com>",
        "bounced/user_unknown/recipient",
        True,
    ),
    C(
        "corpus-rhost-zoho-03",
        "smtp; 554 5.7.1 Email cannot be delivered. Reason: Email flagged as Spam.",
        "blocked/spam_detected/sender",
        None,
    ),
]


def _expected(case: Case) -> tuple[Outcome, Reason, Fault]:
    outcome, reason, fault = case.verdict.split("/")
    return Outcome(outcome), Reason(reason), Fault(fault)


def test_the_table_holds_at_least_200_distinct_real_replies() -> None:
    assert len(CASES) >= 200
    assert len({c.reply for c in CASES}) == len(CASES), "a reply text appears twice"
    duplicates = [i for i, n in Counter(c.id for c in CASES).items() if n > 1]
    assert not duplicates, f"duplicate case ids: {duplicates}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_expectation_is_well_formed(case: Case) -> None:
    outcome, _, _ = _expected(case)  # raises ValueError on a value outside the vocabulary
    if outcome is Outcome.BOUNCED:
        assert case.decisive is not None, "a bounce says whether its evidence is decisive"
    else:
        assert case.decisive is None, "decisive only means something for a bounce"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_real_reply_gets_its_expected_verdict(case: Case) -> None:
    verdict = classify(parse_reply(case.reply), default_policy())
    got = (verdict.outcome, verdict.reason, verdict.fault)
    assert got == _expected(case), f"decided by rule {verdict.rule!r}"
    assert verdict.decisive is bool(case.decisive), f"decided by rule {verdict.rule!r}"


def _provider_rule_ids() -> list[str]:
    with PROVIDER_RULES.open("rb") as f:
        return [rule["id"] for rule in tomllib.load(f)["rule"]]


def test_the_shipped_policy_files_have_no_problems() -> None:
    assert [str(p) for p in check_shipped_files()] == []


def test_every_provider_rule_decides_at_least_one_real_reply() -> None:
    deciding = {classify(parse_reply(c.reply), default_policy()).rule for c in CASES}
    unused = [rule_id for rule_id in _provider_rule_ids() if rule_id not in deciding]
    assert not unused, f"provider rules no real reply in the table exercises: {unused}"


def test_every_provider_rule_cites_a_public_source_and_says_why() -> None:
    with PROVIDER_RULES.open("rb") as f:
        rules = tomllib.load(f)["rule"]
    for rule in rules:
        assert str(rule.get("source", "")).startswith(("https://", "http://", "RFC ")), rule["id"]
        assert len(str(rule.get("why", ""))) > 20, rule["id"]


def _verdict(case_id: str) -> Verdict:
    reply = next(c.reply for c in CASES if c.id == case_id)
    return classify(parse_reply(reply), default_policy())


def test_yahoo_tss04_throttles_the_destination_with_its_own_pause() -> None:
    verdict = _verdict("yahoo-tss04-volume-or-complaints")
    assert verdict.throttle is True
    assert verdict.pause == timedelta(hours=1)


def test_yahoo_ts03_pauses_yahoo_for_the_longest_step_instead_of_retrying_soon() -> None:
    verdict = _verdict("yahoo-ts03-permanently-deferred-421")
    assert (verdict.throttle, verdict.pause) == (True, timedelta(hours=4))


def test_gmail_per_recipient_rate_does_not_throttle_all_of_gmail() -> None:
    verdict = _verdict("gmail-receiving-too-quickly")
    assert verdict.throttle is False


@pytest.mark.parametrize(
    "case_id",
    [
        "gmail-unsolicited-rate-limited-421",
        "outlook-rate-limited-ip-reputation",
        "outlook-server-busy-4-7-500",
        "comcast-rl000001-rate-limit",
        "corpus-rhost-tencent-01",
        "hotmail-rp-001-hourly-limits",
    ],
)
def test_provider_rate_limits_throttle_the_destination(case_id: str) -> None:
    assert _verdict(case_id).throttle is True


@pytest.mark.parametrize(
    ("case_id", "retry_after"),
    [
        ("postgrey-greylisted", timedelta(minutes=5)),
        ("milter-greylist-come-back", timedelta(minutes=5)),
        ("mimecast-greylisting", timedelta(minutes=5)),
    ],
)
def test_greylisting_replies_carry_a_short_retry_hint(case_id: str, retry_after: timedelta) -> None:
    verdict = _verdict(case_id)
    assert verdict.retry_after == retry_after


def test_a_provider_rule_is_checked_before_the_standards_rules() -> None:
    # Yandex's "550 5.7.1 No such user!" would be a 5.7 policy block by the standards table.
    verdict = _verdict("yandex-no-such-user")
    assert verdict.rule == "yandex.no_such_user"
    assert default_policy().rule("yandex.no_such_user").source.startswith("https://")


def test_the_providers_page_lists_every_provider_rule() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "providers.md").read_text("utf-8")
    missing = [rule_id for rule_id in _provider_rule_ids() if f"`{rule_id}`" not in page]
    assert not missing, f"docs/providers.md does not list: {missing}"


#: Generic temporary failures sent under 4.7.0, RFC 3463's "other or undefined security status",
#: a code that names no refusal: the text says the destination has trouble of its own.
TEMPORARY_FAILURES_4_7_0 = [
    "exchange-temporary-server-error-prx4",
    "exchange-temporary-server-error-prx2",
    "gmail-temporary-system-problem-4-7-0",
]


@pytest.mark.parametrize("case_id", TEMPORARY_FAILURES_4_7_0)
def test_a_generic_temporary_failure_under_4_7_0_is_no_refusal_of_the_sender(case_id: str) -> None:
    verdict = _verdict(case_id)
    assert verdict.fault is Fault.DESTINATION, verdict.rule
    hygiene = default_policy().hygiene
    assert not is_sender_deferral(verdict.outcome, verdict.reason, verdict.fault, hygiene)


def test_a_4_7_0_temporary_server_error_is_an_ordinary_deferral_not_a_push_back() -> None:
    # No rate, no "too many": nothing asks to slow down. A 421 with the same words still is a
    # push-back, as every 421 is (DESIGN.md, "List hygiene defaults").
    for case_id in TEMPORARY_FAILURES_4_7_0[:2]:
        assert _evidence(_verdict(case_id)) is Evidence.NEUTRAL, case_id
    assert _evidence(_verdict("gmail-temporary-system-problem-4-7-0")) is Evidence.PUSHBACK


#: Refusals of the sender answered with 4xx under 4.7.x (TLS required, IP not allowlisted,
#: suspicious content, a blocklist, no reverse DNS): they stay blocks of the sender.
SENDER_REFUSALS_4_7 = [
    "gmail-tls-required",
    "gmail-ip-not-in-allowlist",
    "gmail-suspicious-content-links",
    "spamhaus-temporary-450",
    "postfix-cannot-find-hostname-450",
]


@pytest.mark.parametrize("case_id", SENDER_REFUSALS_4_7)
def test_a_4xx_refusal_of_the_sender_under_4_7_x_stays_a_block(case_id: str) -> None:
    verdict = _verdict(case_id)
    assert verdict.fault is Fault.SENDER, verdict.rule
    assert _evidence(verdict) is Evidence.BLOCKED, verdict.rule


def test_a_4_7_0_reply_no_text_rule_explains_stays_the_senders() -> None:
    # The status alone still decides what no text explains (std.status.policy).
    verdict = classify(parse_reply("451 4.7.0"), default_policy())
    assert (verdict.rule, verdict.fault) == ("std.status.policy", Fault.SENDER)
    assert _evidence(verdict) is Evidence.BLOCKED


def _evidence(verdict: Verdict) -> Evidence:
    return evidence_of(
        verdict.outcome,
        verdict.reason,
        decisive=verdict.decisive,
        throttle=verdict.throttle,
        policy=default_policy().hygiene,
        fault=verdict.fault,
    )
