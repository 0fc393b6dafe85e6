"""The function runner: what turns events on the bus into calls of the functions in ``zeroserve/functions/``.

A function is a plain async function under ``@on(EventModel, ...)``; it gets the event's data,
already validated, and a ``Context`` with the platform's parts. The runner owns the rest, as
kopf does for its handlers: one durable pull consumer per function, bounded concurrency, events
of the same deployment or artifact handled one at a time, explicit acks, retries with back-off,
dead letters with a reason, and a shutdown that lets in-flight events finish (or hands them back
to JetStream for redelivery) so that none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent
from nats.aio.msg import Msg

from zeroserve.core import dead_letters, logcontext, metrics, tracing
from zeroserve.core.binding import from_nats
from zeroserve.core.consumer import Consumer, backoff, heartbeat
from zeroserve.errors import MalformedEvent, Rejected, ZeroserveError, reason_of
from zeroserve.events import (
    INVALID_GROUP,
    DeploymentCommand,
    EventData,
    Status,
    content_id,
    group_of,
    new_event,
    parse_data,
)

if TYPE_CHECKING:
    from zeroserve.artifacts.cache import ModelCache
    from zeroserve.backends.base import Backend
    from zeroserve.core.store import Deployment, Store
    from zeroserve.deployments.lifecycle import Deployments
    from zeroserve.platform import Platform
    from zeroserve.settings import Settings
    from zeroserve.templates.executables import Executables
    from zeroserve.templates.plans import ResourcePlan
    from zeroserve.templates.serving import ServingTemplate

log = logging.getLogger(__name__)

Handler = Callable[[Any, "Context"], Awaitable[None]]
_MARK = "__zeroserve_events__"
_CLAIM_MARK = "__zeroserve_claims__"
DEPLOYMENT_EVENTS = "io.zeroserve.deployment."


def on(*models: type[EventData], claim: bool = False) -> Callable[[Handler], Handler]:
    """Declare which event types a function handles: ``@on(DeploymentRequested)``.

    ``claim=True`` (lifecycle commands only): the runner claims the deployment the command is
    about before it calls the function, which finds the record in ``ctx.deployment``; a
    redelivered command that a later one has overtaken is acked without a call.
    """
    if not models:
        raise TypeError("@on needs at least one event data model")
    if claim and not all(issubclass(model, DeploymentCommand) for model in models):
        raise TypeError("@on(..., claim=True) is for deployment.requested, .stopped and .deleted only")

    def mark(handler: Handler) -> Handler:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"{handler.__name__} must be an async function")
        setattr(handler, _MARK, models)
        setattr(handler, _CLAIM_MARK, claim)
        return handler

    return mark


@dataclass(frozen=True)
class Function:
    name: str
    models: tuple[type[EventData], ...]
    handler: Handler
    claim: bool = False

    @functools.cached_property
    def event_types(self) -> list[str]:
        return [m.event_type for m in self.models]

    async def handle(self, data: EventData, ctx: Context) -> None:
        """Call the function with one event, its deployment claimed first if it asked for that."""
        if self.claim:
            assert isinstance(data, DeploymentCommand)  # @on checked it
            ctx.claimed = await ctx.deployments.claim_for(ctx.group, data, ctx.sequence)
            if ctx.claimed is None:
                log.info("%s skips event %s: a later event has acted on deployment %s/%s already",
                         self.name, ctx.event_id, ctx.group, data.id)
                return
        await self.handler(data, ctx)


def about(data: EventData, event: CloudEvent) -> str:
    """What an event is about (a deployment, an artifact): its data's id, else its CloudEvent id.
    Events about one thing are handled one after another."""
    return str(getattr(data, "id", None) or event["id"])


def load_functions(directory: Path) -> list[Function]:
    """Every ``@on`` function in ``directory/*.py``; the function's name names its consumer."""
    if not directory.is_dir():
        raise ZeroserveError(f"functions directory {directory} does not exist", reason="NoFunctions")
    functions: list[Function] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"zeroserve_functions.{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            models = getattr(value, _MARK, None)
            if models and getattr(value, "__module__", None) == module.__name__:
                functions.append(Function(name=value.__name__, models=models, handler=value,
                                          claim=getattr(value, _CLAIM_MARK, False)))
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise ZeroserveError(f"two functions share a name in {directory}: {sorted(names)}", reason="NoFunctions")
    return functions


@dataclass
class Context:
    """What a function sees of the platform while it handles one event."""

    event: CloudEvent
    group: str
    platform: Platform
    # True on the last delivery the runner allows: a failure now ends in the dead letters.
    final_attempt: bool = False
    # The event's place in its stream: events published later have higher numbers.
    sequence: int = 0
    # The deployment a lifecycle command is about, claimed for it (``@on(..., claim=True)``).
    claimed: Deployment | None = None

    @property
    def deployment(self) -> Deployment:
        if self.claimed is None:
            raise TypeError("ctx.deployment is there for a function under @on(..., claim=True)")
        return self.claimed

    @property
    def event_id(self) -> str:
        return str(self.event["id"])

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    @property
    def store(self) -> Store:
        return self.platform.store

    @property
    def deployments(self) -> Deployments:
        return self.platform.deployments

    @property
    def backend(self) -> Backend:
        return self.platform.backend

    @property
    def models(self) -> ModelCache:
        return self.platform.models

    @property
    def templates(self) -> dict[str, ServingTemplate]:
        return self.platform.templates

    @property
    def executables(self) -> Executables:
        """The templates of every group, the operator's and those added from git or applied, read now."""
        return self.platform.executables

    @property
    def plans(self) -> dict[str, ResourcePlan]:
        return self.platform.plans

    async def emit(self, data: EventData, *, subject: str | None = None) -> None:
        """Announce an output event caused by this one.

        Its id comes from the causing event and the content, so a retried handler announces the
        same thing once (JetStream drops the repeat) and anything new under a new id.
        """
        digest = content_id(data.model_dump_json())
        event = new_event(
            data, source="/zeroserve/functions", subject=subject,
            causationid=self.event_id, id=f"{self.event_id}.{digest}",
        )
        await self.platform.bus.publish(event, self.group)

    async def awaits(self, function: str, model: type[EventData], id: str) -> bool:
        """Whether ``function`` may have yet to handle a ``model`` event about ``id`` (its data's id, else
        its CloudEvent id) in this group, published before this event. Functions read the stream each
        through their own consumer, in no order across them: ask this before treating what an earlier
        event creates as missing."""
        for event in await self.platform.bus.unhandled_before(function, model.event_type, self.group, self.sequence):
            with contextlib.suppress(MalformedEvent):  # its own function dead-letters it
                if about(parse_data(event), event) == id:
                    return True
        return False

    async def set_status(self, deployment_id: str, status: Status, **fields: Any) -> Deployment:
        return await self.platform.deployments.transition(
            self.group, deployment_id, status, causation=self.event_id, **fields
        )

    async def announce(self, deployment_id: str) -> None:
        """Announce the deployment's status as it is (a retry finishing a change it began)."""
        await self.platform.deployments.announce(self.group, deployment_id, causation=self.event_id)

    async def set_deleted(self, deployment_id: str) -> None:
        """Announce the deployment deleted (targetStatus DELETED) and remove its record."""
        await self.platform.deployments.delete(self.group, deployment_id, causation=self.event_id)

    async def log(self, deployment_id: str, message: str) -> None:
        await self.platform.logs.control(self.group, deployment_id, message)


class Runner:
    """Runs functions against their consumers until stopped."""

    def __init__(self, platform: Platform, functions: list[Function]) -> None:
        self.platform = platform
        self.functions = functions
        self.settings = platform.settings
        # Handlers running at once; the pull loops fetch only as much as this leaves free.
        self._slots = asyncio.Semaphore(self.settings.runner_concurrency)
        self._lock_waiters = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._lock_users: dict[tuple[str, str], int] = {}
        # Each function's counter of handled events, looked up once rather than for every event.
        self._handled = {function.name: metrics.events_handled.labels(function.name) for function in functions}
        # Events queued behind another of their deployment wait on its lock, not on a slot.
        self._consumer = Consumer("runner", lambda inflight: self.settings.runner_concurrency
                                  - (inflight - self._lock_waiters))

    async def start(self) -> None:
        for function in self.functions:
            subscription = await self.platform.bus.consumer(function.name, function.event_types)
            # About as many as can start soon (each function's loop asks for itself).
            self._consumer.start(subscription, functools.partial(self._handle, function), name=function.name)
        log.info("runner started: %s", ", ".join(f.name for f in self.functions))

    async def stop(self, grace: float = 20.0) -> None:
        """Stop taking events; let in-flight ones finish within ``grace``, hand the rest back."""
        await self._consumer.stop(grace)  # a cancelled _handle naks its event: redelivered at once, not lost

    async def _handle(self, function: Function, msg: Msg) -> None:
        group = INVALID_GROUP  # until the subject shows a valid one: that is where its dead letter goes
        try:
            # The heartbeat starts at once: waiting for a slot or for the deployment's lock counts
            # as work in progress, so JetStream does not hand the event out a second time meanwhile.
            async with heartbeat(msg, every=self.settings.ack_wait_s / 3):
                group = group_of(msg.subject)
                event = from_nats(msg.headers, msg.data)
                data = parse_data(event)
                if data.event_type not in function.event_types:
                    raise MalformedEvent(f"{function.name} does not handle {data.event_type}")
                metadata = msg.metadata
                context = Context(event=event, group=group, platform=self.platform,
                                  final_attempt=(metadata.num_delivered or 1) >= self.settings.max_deliver,
                                  sequence=metadata.sequence.stream)
                logcontext.event_id.set(context.event_id)  # this task runs in a context of its own
                if data.event_type.startswith(DEPLOYMENT_EVENTS):
                    logcontext.deployment_id.set(getattr(data, "id", None))
                # The lock first, then a slot: an event queued behind others of its deployment must
                # not hold a slot that an event of another deployment could use meanwhile.
                async with self._lock(group, about(data, event)), self._slots:
                    with tracing.handling(event, function.name, msg.subject):  # continues the event's trace
                        await function.handle(data, context)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Rejected as rejected:
            await self._dead_letter(msg, function, group, rejected.reason, rejected.message)
        except Exception as error:
            await self._retry_or_dead_letter(msg, function, group, error)
        else:
            self._consumer.settled(msg)
            await msg.ack()
            self._handled[function.name].inc()

    async def _retry_or_dead_letter(self, msg: Msg, function: Function, group: str, error: Exception) -> None:
        reason, message = reason_of(error)
        attempt = msg.metadata.num_delivered or 1
        if attempt >= self.settings.max_deliver:
            await self._dead_letter(msg, function, group, reason, f"gave up after {attempt} attempts: {message}")
            return
        delay = backoff(self.settings.retry_backoff_s, attempt)
        log.info("%s failed on %s (attempt %d, retry in %.1f s): %s: %s",
                 function.name, msg.subject, attempt, delay, reason, message,
                 exc_info=not isinstance(error, ZeroserveError))
        metrics.events_retried.labels(function.name).inc()
        await msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, function: Function, group: str, reason: str, message: str) -> None:
        await dead_letters.send(self.platform.bus.js, msg, function.name, group, reason, message)
        metrics.events_dead_lettered.labels(function.name, reason).inc()
        await msg.ack()

    def _lock(self, group: str, key: str) -> _Turn:
        """Events about one thing (a deployment, an artifact) run one after another, in any function."""
        return _Turn(self, (group, key))


class _Turn:
    """An event's turn among the events about the same thing: ``async with runner._lock(group, key)``
    (a class, not a generator-based context manager: it is entered once for every event)."""

    __slots__ = ("_runner", "_name", "_lock")

    def __init__(self, runner: Runner, name: tuple[str, str]) -> None:
        self._runner = runner
        self._name = name
        self._lock = runner._locks.setdefault(name, asyncio.Lock())
        runner._lock_users[name] = runner._lock_users.get(name, 0) + 1

    async def __aenter__(self) -> None:
        runner = self._runner
        runner._lock_waiters += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise
        finally:
            runner._lock_waiters -= 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        users = self._runner._lock_users
        users[self._name] -= 1
        if not users[self._name]:
            del users[self._name], self._runner._locks[self._name]
