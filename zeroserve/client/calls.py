"""A call of the API, written once for both clients: ``Call`` is one request and how to read its answer,
``StreamCall`` a server-sent event stream and how to read each event, and the ``operation`` and ``stream``
decorators turn a method that builds one into what a ``Client`` runs at once and an ``AsyncClient`` awaits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx

from zeroserve.client.records import Event

if TYPE_CHECKING:
    from zeroserve.client.asyncio import AsyncClient
    from zeroserve.client.streams import AsyncEventStream, EventStream
    from zeroserve.client.sync import Client

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Call(Generic[T]):
    """One request of the API and how to read its answer: what both clients send."""

    method: str
    # Relative to the gateway URL, or a full URL (a deployment's inference URL).
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The resource group the call acts in, or None for routes that belong to no group (admin, token).
    group: str | None = None
    authenticated: bool = True


@dataclass
class StreamCall(Generic[T]):
    """A server-sent event stream and how to read each event of it (None: skip the event)."""

    call: Call[None]
    parse: Callable[[Event], T | None]
    # How long to wait for the next event (None: for ever); a wait that long ends with ApiError Timeout.
    timeout: float | None = None

    def resumed(self, last_event_id: str) -> StreamCall[T]:
        """The same stream, asked to go on after the event ``last_event_id`` (SSE's ``Last-Event-ID``)."""
        call = replace(self.call, headers={**self.call.headers, "Last-Event-ID": last_event_id})
        return replace(self, call=call)



class operation(Generic[P, T]):  # noqa: N801 - used as a decorator, like property
    """Turns a method that builds a ``Call[T]`` into the operation: on a ``Client`` it returns ``T``,
    on an ``AsyncClient`` an awaitable of ``T``, with the builder's own signature."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, client: AsyncClient, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, client: Client, owner: Any) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: None, owner: Any) -> operation[P, T]: ...
    def __get__(self, client: Any, owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        def send(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._send(build(client, *args, **kwargs))

        send.__doc__ = build.__doc__
        send.__name__ = build.__name__
        return send


class stream(Generic[P, T]):  # noqa: N801 - used as a decorator, like property
    """Like ``operation``, for a server-sent event stream: an ``EventStream`` on a ``Client`` (iterate it),
    an ``AsyncEventStream`` on an ``AsyncClient`` (``async for``); both are context managers."""

    def __init__(self, build: Callable[Concatenate[Any, P], StreamCall[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, client: AsyncClient, owner: Any) -> Callable[P, AsyncEventStream[T]]: ...
    @overload
    def __get__(self, client: Client, owner: Any) -> Callable[P, EventStream[T]]: ...
    @overload
    def __get__(self, client: None, owner: Any) -> stream[P, T]: ...
    def __get__(self, client: Any, owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        def open_stream(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._stream(build(client, *args, **kwargs))

        open_stream.__doc__ = build.__doc__
        open_stream.__name__ = build.__name__
        return open_stream
