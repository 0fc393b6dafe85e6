"""Dead letters: events a function gave up on, kept with the reason, in their own stream.

An event that a function refuses (``Rejected``: malformed, invalid) or that still fails after
``settings.max_deliver`` attempts is copied to ``zeroserve.<group>.deadletter.<function>``, its
own headers kept and four added (reason, message, function, original subject), and then acked
where it came from. A dead letter is written once per stream message and function, however often
the runner gets there, because its ``Nats-Msg-Id`` is derived from them.
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from zeroserve.events import deadletter_subject

log = logging.getLogger(__name__)

DEADLETTER_STREAM = "ZEROSERVE_DEADLETTER"

# Headers a dead letter carries next to the original event's own.
REASON_HEADER = "Zeroserve-Deadletter-Reason"
MESSAGE_HEADER = "Zeroserve-Deadletter-Message"
FUNCTION_HEADER = "Zeroserve-Deadletter-Function"
SUBJECT_HEADER = "Zeroserve-Deadletter-Subject"


async def send(js: JetStreamContext, msg: Msg, function: str, group: str, reason: str, message: str) -> None:
    """Copy ``msg`` to the dead letters of ``function`` in ``group``, with why it was given up on."""
    headers = dict(msg.headers or {})
    headers.pop("Nats-Msg-Id", None)
    headers.update({
        REASON_HEADER: reason,
        MESSAGE_HEADER: " | ".join(message.splitlines())[:2000],  # headers are one line
        FUNCTION_HEADER: function,
        SUBJECT_HEADER: msg.subject,
        # One dead letter per (stream message, function), even if this runs twice.
        "Nats-Msg-Id": f"deadletter:{function}:{msg.metadata.sequence.stream}",
    })
    await js.publish(deadletter_subject(group, function), msg.data, headers=headers)
    log.warning("dead-lettered %s for %s: %s: %s", msg.subject, function, reason, message)
