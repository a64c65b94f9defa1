"""deliverability: SMTP replies and bounce messages in, delivery decisions and list hygiene out.

The public API is what `__all__` names; everything else is internal and may change. The core
(parsing, classification, policy) imports nothing heavy; the store-backed names (`Engine`,
`run_nightly`, ...) load SQLAlchemy on first use.

    >>> from deliverability import classify, parse_reply
    >>> classify(parse_reply("550 5.1.1 User unknown")).outcome
    <Outcome.BOUNCED: 'bounced'>

`deliverability.classify` here is the function; the module of the same name is reached with
``from deliverability.classify import ...`` (``import deliverability.classify as m`` would give
the function).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deliverability.addresses import Address, normalize_address
from deliverability.classify import classify, classify_text
from deliverability.errors import (
    AddressError,
    ConfigError,
    DeliverabilityError,
    IngestError,
    InputError,
    PolicyError,
    Problem,
    ReplyParseError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
)
from deliverability.policy import Policy, check_policy_file, default_policy, load_policy
from deliverability.replies import Reply, StatusCode, parse_reply, parse_status
from deliverability.verdicts import Verdict
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

if TYPE_CHECKING:
    from deliverability.engine import (
        BatchResult,
        Decision,
        DueRetry,
        Engine,
        RecipientStatus,
        ReplyRecord,
    )
    from deliverability.hygiene import ActionSummary, Throttle
    from deliverability.nightly import NightlySummary, run_nightly

# Names whose modules import the store (SQLAlchemy): loaded when first asked for.
_LAZY = {
    "BatchResult": "deliverability.engine",
    "Decision": "deliverability.engine",
    "DueRetry": "deliverability.engine",
    "Engine": "deliverability.engine",
    "RecipientStatus": "deliverability.engine",
    "ReplyRecord": "deliverability.engine",
    "ActionSummary": "deliverability.hygiene",
    "Throttle": "deliverability.hygiene",
    "NightlySummary": "deliverability.nightly",
    "run_nightly": "deliverability.nightly",
}

__all__ = [
    "ActionKind",
    "ActionScope",
    "ActionStatus",
    "ActionSummary",
    "Address",
    "AddressError",
    "BatchResult",
    "ConfigError",
    "Decision",
    "DeliverabilityError",
    "DeliveryState",
    "DueRetry",
    "Engine",
    "EventKind",
    "Fault",
    "IngestError",
    "InputError",
    "NightlySummary",
    "Outcome",
    "Policy",
    "PolicyError",
    "Problem",
    "Reason",
    "RecipientStatus",
    "Reply",
    "ReplyParseError",
    "ReplyRecord",
    "Standing",
    "StatusCode",
    "StoreBusyError",
    "StoreError",
    "StoreUnavailableError",
    "Throttle",
    "Verdict",
    "check_policy_file",
    "classify",
    "classify_text",
    "default_policy",
    "load_policy",
    "normalize_address",
    "parse_reply",
    "parse_status",
    "run_nightly",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deliverability' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
