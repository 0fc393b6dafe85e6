"""The one pull loop of zeroserve: how messages come out of a JetStream durable consumer to be worked on.

The runner (one durable per function) and the webhook dispatcher (one per stream) both read this
way: a loop per durable fetches only as many messages as there is room for, each message is worked
on in a task of its own (with a context of its own, so what one sets for its log lines does not
leak into another), a failed fetch is tried again shortly, and a stop ends the fetches in progress at
once (``_withdraw``), hands back what they brought and gives in-flight work a grace period. While a message
is worked on, ``heartbeat`` keeps JetStream from handing it to another consumer, and ``backoff``
reads the one kind of retry schedule zeroserve has: a table of delays, the last one repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext, api
from nats.js.errors import APIError

log = logging.getLogger(__name__)

# How long one fetch waits for messages; also bounds how long a stop waits for a pull loop that
# could not be withdrawn.
FETCH_WAIT_S = 1.0
# The most messages one fetch asks for.
MAX_FETCH = 64
# How long a loop waits after a failed fetch (connection trouble) before the next.
RETRY_FETCH_S = 0.5
# How long the messages of a batch that could not be started are left before their redelivery.
HAND_BACK_S = 1.0

# What works on one message: acks or naks it itself.
MessageHandler = Callable[[Msg], Coroutine[Any, Any, None]]


def backoff(delays: Sequence[float], attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (from 1): its place in ``delays``, the last
    one for every attempt beyond, none when there are no delays."""
    return delays[min(attempt - 1, len(delays) - 1)] if delays else 0.0


def heartbeat(msg: Msg, every: float) -> Heartbeat:
    """``async with heartbeat(msg, every)``: see ``Heartbeat``."""
    return Heartbeat(msg, every)


class Heartbeat:
    """Tell JetStream, every ``every`` seconds, that a message is still being worked on, so that it
    is not handed to another consumer while a long handler (or a delivery's retries) runs."""

    # A timer, not a task: most messages are done long before the first beat, and a timer costs a
    # fraction of a task started and cancelled for every message.
    __slots__ = ("_msg", "_every", "_timer", "_beating")

    def __init__(self, msg: Msg, every: float) -> None:
        self._msg = msg
        self._every = every
        self._timer: asyncio.TimerHandle | None = None
        self._beating: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._every, self._beat)

    async def __aexit__(self, *exc_info: object) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._beating is not None:
            self._beating.cancel()

    def _beat(self) -> None:
        self._beating = asyncio.get_running_loop().create_task(self._tell())

    async def _tell(self) -> None:
        with contextlib.suppress(Exception):
            await self._msg.in_progress()
        if self._timer is not None:  # not over meanwhile: the next beat
            self._timer = asyncio.get_running_loop().call_later(self._every, self._beat)


class Consumer:
    """Pull loops over one or more durables, sharing the room for messages in flight."""

    def __init__(self, name: str, room: Callable[[int], int]) -> None:
        self.name = name  # who reads, for log lines: "runner", "webhooks out"
        # Given the tasks in flight, how many more messages may start now.
        self._room = room
        self.inflight: set[asyncio.Task[None]] = set()
        # The messages (by id) whose work is done but for their ack (``settled``): their room is free already.
        self._settled: set[int] = set()
        self._freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pullers: list[asyncio.Task[None]] = []
        self._subscriptions: list[JetStreamContext.PullSubscription] = []

    def start(self, subscription: JetStreamContext.PullSubscription, handle: MessageHandler, *, name: str) -> None:
        """Pull from ``subscription`` in a task of its own until ``stop``."""
        self._pullers.append(asyncio.create_task(self.pull(subscription, handle, label=name), name=name))

    async def pull(
        self, subscription: JetStreamContext.PullSubscription, handle: MessageHandler, *, label: str | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Fetch and start ``handle`` on each message until stopped or cancelled; ``before`` runs when a
        fetch brings its first message, and if it fails that fetch's messages are handed back for a
        later redelivery."""
        label = label or self.name
        self._subscriptions.append(subscription)
        while not self._stopping.is_set():
            room = self._room(len(self.inflight) - len(self._settled))
            if room <= 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            if await self._take(subscription, min(room, MAX_FETCH), label, handle, before):
                # The messages' work starts before the next pull request is written: an event's
                # latency is not made to wait for the loop's bookkeeping.
                await asyncio.sleep(0)

    async def _take(self, subscription: JetStreamContext.PullSubscription, batch: int, label: str,
                    handle: MessageHandler, before: Callable[[], Awaitable[None]] | None) -> int:
        """One fetch: ``handle`` started on each message as soon as it arrives (not when the pull
        request ends); how many came."""
        came = 0
        refused: Exception | None = None  # ``before`` failed: this fetch's messages are handed back
        try:
            async for msg in fetch(subscription, batch, FETCH_WAIT_S):
                came += 1
                if came == 1 and before is not None:
                    refused = await _failure(before)
                if refused is not None:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=HAND_BACK_S)
                elif self._stopping.is_set():  # hand it back: redelivered at once to the next reader
                    await msg.nak()
                else:
                    task = asyncio.create_task(handle(msg), context=contextvars.Context())
                    self.inflight.add(task)
                    task.add_done_callback(functools.partial(self._done, id(msg)))
        except (TimeoutError, NatsTimeout):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as error:  # connection trouble: wait and fetch again
            log.warning("%s: fetch for %s failed: %s", self.name, label, error)
            await asyncio.sleep(RETRY_FETCH_S)
        if refused is not None:
            log.warning("%s: cannot start the %d messages fetched for %s, handing them back: %s",
                        self.name, came, label, refused)
        return came

    def settled(self, msg: Msg) -> None:
        """Say, from the task of a message this consumer started, that its work is done and only its ack
        is left: its room goes to the next pull request now, so that the request and the acks of a
        batch leave in one write."""
        self._settled.add(id(msg))
        self._freed.set()

    def _done(self, msg: int, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self._settled.discard(msg)
        self._freed.set()

    async def stop(self, grace: float) -> None:
        """Stop fetching; let in-flight work finish within ``grace``, cancel the rest (a handler hands
        its message back when cancelled: redelivered at once, not lost)."""
        self._stopping.set()
        self._freed.set()  # wake loops that wait for room
        for subscription in self._subscriptions:
            await self._withdraw(subscription)
        # A fetch in progress is let finish so that what it brings is handed back at once (cancelling
        # it would leave those messages to the ack-wait timeout); withdrawn, it ends at once, else it
        # lasts at most FETCH_WAIT_S.
        _, slow = await asyncio.wait(self._pullers, timeout=FETCH_WAIT_S + 2) if self._pullers else ((), ())
        for puller in slow:
            puller.cancel()
        await asyncio.gather(*self._pullers, return_exceptions=True)
        for subscription in self._subscriptions:
            await _hand_back_queued(subscription)
        if self.inflight:
            _, pending = await asyncio.wait(self.inflight, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _withdraw(self, subscription: JetStreamContext.PullSubscription) -> None:
        """End the fetch in progress on ``subscription`` now rather than when its pull request expires.

        With the inbox's interest gone (and the server's answer to that seen), JetStream delivers no
        more to the pull request: a message published later waits in the stream for the next reader.
        Whatever it delivered before is queued here by then; the fetch is told that its requests ended
        the way the server says so, once for each answer nats-py's fetch may still wait for (its first
        request, its lingering one, the rest of a batch), and returns what it holds. nats-py has no
        public call for either step; the answers no fetch read are dropped by ``_hand_back_queued``.
        """
        inbox = subscription._sub
        try:
            await inbox._conn._send_unsubscribe(inbox._id)
            await inbox._conn.flush()
        except Exception as error:  # the connection is going: the fetch ends at its expiry then
            log.debug("%s: cannot withdraw a pull request: %s", self.name, error)
            return
        ended = {api.Header.STATUS.value: api.StatusCode.REQUEST_TIMEOUT.value,
                 api.Header.DESCRIPTION.value: "Request Timeout"}
        for _ in range(3):
            inbox._pending_queue.put_nowait(Msg(_client=inbox._conn, subject=inbox.subject, headers=ended))

    async def cancel(self) -> None:
        """Cancel every task in flight now (their messages are handed back) and wait for them."""
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)


async def fetch(subscription: JetStreamContext.PullSubscription, batch: int, wait: float) -> AsyncIterator[Msg]:
    """Up to ``batch`` messages of a pull consumer, each as soon as it arrives: those queued here
    already, else those published within ``wait`` seconds.

    One pull request, read straight from the subscription's queue (nats-py's ``fetch`` starts two
    tasks per message and hands over nothing until its requests have ended). With nothing queued the
    request stays open for ``wait`` seconds or ``batch`` messages, so a quiet stream's events reach
    the reader one by one without a request each; with some queued it asks only for what JetStream
    has now (no_wait).
    """
    inbox = subscription._sub
    queue = inbox._pending_queue
    given = 0
    # Messages a fetch that ended at its timeout left behind come first; stray statuses ended requests gone.
    while not queue.empty() and given < batch:
        msg = _taken(inbox, queue.get_nowait())
        if _status(msg) is None:
            given += 1
            yield msg
    if given == batch:
        return
    request: dict[str, Any] = {"batch": batch - given}
    if given:
        request["no_wait"] = True
    else:  # the server ends it a little before the reader gives up on it
        request["expires"] = int(wait * 1e9) - 100_000
    await inbox._conn.publish(subscription._nms, json.dumps(request).encode(), subscription._deliver)
    deadline = asyncio.get_running_loop().time() + wait
    while given < batch:
        try:
            async with asyncio.timeout_at(deadline):
                msg = _taken(inbox, await queue.get())
        except TimeoutError:
            return  # what came, if anything
        status = _status(msg)
        if status is None:
            given += 1
            yield msg
        elif status == api.StatusCode.CONTROL_MESSAGE.value:  # a heartbeat: the request goes on
            continue
        elif status in _REQUEST_ENDED:
            return
        else:
            raise APIError.from_msg(msg)


async def _failure(step: Callable[[], Awaitable[None]]) -> Exception | None:
    """How ``step`` failed, or None."""
    try:
        await step()
    except asyncio.CancelledError:
        raise
    except Exception as error:
        return error
    return None


# Statuses that end a pull request without an error: nothing more now (404), its expiry (408), and a
# conflict such as the consumer's limit of waiting requests (409).
_REQUEST_ENDED = frozenset(code.value for code in (api.StatusCode.NO_MESSAGES, api.StatusCode.REQUEST_TIMEOUT,
                                                   api.StatusCode.CONFLICT))


def _status(msg: Msg) -> str | None:
    return msg.headers.get(api.Header.STATUS.value) if msg.headers else None


def _taken(inbox: Subscription, msg: Msg) -> Msg:
    # The bookkeeping of nats-py's next_msg: the bytes the subscription holds count towards its
    # slow-consumer limit.
    inbox._pending_size -= len(msg.data)
    inbox._pending_queue.task_done()
    return msg


async def _hand_back_queued(subscription: JetStreamContext.PullSubscription) -> None:
    """Hand back the messages delivered to ``subscription`` that no fetch took (a stop's leftovers)."""
    queue = subscription._sub._pending_queue
    while not queue.empty():
        msg = queue.get_nowait()
        if msg.headers is None or api.Header.STATUS.value not in msg.headers:
            with contextlib.suppress(Exception):
                await msg.nak()
