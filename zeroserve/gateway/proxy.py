"""Forwarding one inference request to a model server and its answer back, streamed both ways.

The gateway speaks HTTP/1.1 to model servers itself, over keep-alive connections it keeps per
server (``Connections``), and reads their answers with httptools, the C parser uvicorn uses.
A general client (aiohttp, httpx) costs more per request than the whole budget of this path
(docs/benchmarks.md), and neither would let an answer's parts through as they come without
buffering some. Neither the request body nor the answer is ever whole in memory here: each part
is written on as it arrives and waits until the other side has taken the previous one (the
transports' flow control), so memory stays flat whatever the size, and an event stream's events
reach the caller as the model server writes them.

Headers follow RFC 9110 (section 7.6.1): hop-by-hop headers and those the ``Connection`` header
names are dropped both ways, the caller's bearer token is not forwarded (it is zeroserve's, checked
by the gateway; a model server must not be able to replay it), and the model server's ``Date`` and
``Server`` give way to the gateway's own, so that an answer has one of each. ``traceparent`` and
``tracestate`` pass as they are, unless tracing is on: then the caller (``gateway/inference.py``)
puts its forward span's context in their place, in the caller's trace.

Failures before the answer starts raise (the caller answers them with SAP's error body):
``BodyTooLarge`` (413), ``BodyIncomplete`` (400), ``UpstreamTimeout`` (504), ``UpstreamFailed``
(502), ``ClientGone`` (nobody to answer). After it started, a model server that stops or breaks
off mid-answer ends the caller's answer at once, without its final chunk, so the caller sees it
cut short rather than complete (``Forwarded.broken``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httptools

Headers = list[tuple[bytes, bytes]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"transfer-encoding", b"upgrade",
})
# Besides hop-by-hop ones: the caller's token (its header, or the console's cookie), and what this hop
# writes itself (Host, the framing, Expect: uvicorn answered any 100-continue already).
NOT_FORWARDED = HOP_BY_HOP | {b"authorization", b"cookie", b"host", b"content-length", b"expect"}
NOT_RETURNED = HOP_BY_HOP | {b"date", b"server"}
READ_SIZE = 64 * 1024
# An idle connection is not used again after this: uvicorn (every model server here) closes one
# after 5 s without a request, and a request written as it closes would be lost.
IDLE_S = 4.0
# A caller that leaves while its answer is awaited is noticed from this long after its request on.
WATCH_AFTER_S = 0.05


class UpstreamTimeout(Exception):
    pass


class UpstreamFailed(Exception):
    pass


class BodyTooLarge(Exception):
    pass


class BodyIncomplete(Exception):
    pass


class ClientGone(Exception):
    pass


def kept(headers: Headers, dropped: frozenset[bytes]) -> Headers:
    """``headers`` without ``dropped`` and without those a ``Connection`` header names."""
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip() for token in value.lower().split(b","))
    return [(name, value) for name, value in headers if name not in dropped and name not in named]


@dataclass(frozen=True)
class Upstream:
    """Where a request goes: a model server's address, and the path (with its query) there."""

    scheme: str
    host: str
    port: int
    target: bytes

    @property
    def authority(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        return (self.host if self.port == default else f"{self.host}:{self.port}").encode()


class Connection:
    """One keep-alive HTTP/1.1 connection to a model server."""

    __slots__ = ("key", "reader", "writer", "idle_since", "answer")

    def __init__(self, key: tuple[str, str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.answer: _Answer | None = None

    def usable(self, now: float) -> bool:
        return now - self.idle_since < IDLE_S and not self.reader.at_eof() and not self.writer.is_closing()

    def abort(self) -> None:
        self.writer.transport.abort()


class Connections:
    """The idle keep-alive connections to each model server, most recently used first."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._swept_at = time.monotonic()

    async def get(self, upstream: Upstream, fresh: bool = False) -> tuple[Connection, bool]:
        """A connection to ``upstream``, and whether it served a request before."""
        key = (upstream.scheme, upstream.host, upstream.port)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            connection = idle.pop()
            if connection.usable(now):
                return connection, True
            connection.abort()
        tls = ssl.create_default_context() if upstream.scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(upstream.host, upstream.port, ssl=tls, limit=READ_SIZE)
        except OSError as error:
            raise UpstreamFailed(f"cannot connect: {error.strerror or error}") from None
        return Connection(key, reader, writer), False

    def put(self, connection: Connection) -> None:
        now = connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.key, []).append(connection)
        if now - self._swept_at > IDLE_S:  # close what model servers that went away left behind
            self._swept_at = now
            for key, idle in list(self._idle.items()):
                for stale in [c for c in idle if not c.usable(now)]:
                    idle.remove(stale)
                    stale.abort()
                if not idle:
                    del self._idle[key]

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.writer.close()
        self._idle.clear()


@dataclass
class Forwarded:
    """How a forward went: the model server's status, when its answer started, whether it broke off."""

    status: int = 0
    head_s: float = 0.0
    broken: str | None = None


class _Answer:
    """httptools' callbacks: the model server's answer as it is parsed."""

    parser: Any  # the parser that calls back: asked whether to keep the connection while it knows

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.headers: Headers = []
        self.head_done = False
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # forgotten once the call returns

    def take(self) -> bytes:
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        return body


def _answer(connection: Connection) -> tuple[_Answer, httptools.HttpResponseParser]:
    """The parser of the connection's next answer: one for the connection's life, as making one
    costs more than reading a small answer with it."""
    answer = connection.answer
    if answer is None:
        answer = connection.answer = _Answer()
        answer.parser = httptools.HttpResponseParser(answer)
    else:
        answer.reset()
    return answer, answer.parser


@dataclass
class Exchange:
    """One request on its way: the connection it uses, and whether the caller left."""

    connections: Connections
    upstream: Upstream
    timeout_s: float
    connection: Connection | None = None
    caller_left: bool = False
    reading_body: bool = False  # waiting for the caller's next part: a timeout now is the caller's
    settled: bool = False
    _timer: asyncio.TimerHandle | None = None
    _watcher: asyncio.Future[None] | None = None

    def watch_caller(self, receive: Receive) -> None:
        """Once its body is read: notice the caller leaving, and cut the model server off then. Only
        from ``WATCH_AFTER_S`` on: most answers are done sooner, and need no watching task at all."""
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._watch, receive)

    def _watch(self, receive: Receive) -> None:
        self._watcher = asyncio.ensure_future(self._until_caller_leaves(receive))

    async def _until_caller_leaves(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self.settled:
            self.caller_left = True
            if self.connection is not None:
                self.connection.abort()

    def settle(self) -> None:
        """The answer is done, or given up: nothing to watch any more."""
        self.settled = True
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def forward(connections: Connections, upstream: Upstream, scope: Scope, receive: Receive,
                  send: Send, *, timeout_s: float, max_body: int, declared: int | None,
                  decorate: Callable[[Forwarded], Headers]) -> Forwarded:
    """Forward the request of ``scope`` to ``upstream`` and stream its answer to ``send``.

    ``declared`` is the caller's Content-Length (None: chunked), already checked against
    ``max_body``; ``decorate`` gives headers to add to the answer once it starts (its status and
    when it started are known then).
    """
    exchange = Exchange(connections, upstream, timeout_s)
    forwarded = Forwarded()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            answer, parser = await _send_request(exchange, _request_head(scope, upstream), receive, declared,
                                                 max_body, deadline)
            await _read_head(exchange, answer, parser)
            forwarded.status = parser.get_status_code()
            forwarded.head_s = time.perf_counter() - started
            headers = kept(answer.headers, NOT_RETURNED) + decorate(forwarded)
            await send({"type": "http.response.start", "status": forwarded.status, "headers": headers})
            await _stream_body(exchange, answer, parser, send, deadline)
    except TimeoutError:
        if exchange.caller_left:
            raise ClientGone() from None
        if exchange.reading_body:
            raise BodyIncomplete(f"the request body stalled for {timeout_s:g} s") from None
        if forwarded.status == 0:
            raise UpstreamTimeout() from None
        forwarded.broken = f"the model server was silent for {timeout_s:g} s in the middle of its answer"
    except UpstreamFailed as error:
        if forwarded.status == 0:
            raise
        forwarded.broken = str(error)
    finally:
        exchange.settle()
        if exchange.connection is not None:  # not kept for another request: broken, cut, or closing
            exchange.connection.abort()
    return forwarded


def _request_head(scope: Scope, upstream: Upstream) -> list[bytes]:
    lines = [scope["method"].encode(), b" ", upstream.target, b" HTTP/1.1\r\nhost: ", upstream.authority, b"\r\n"]
    for name, value in kept(scope["headers"], NOT_FORWARDED):
        lines += [name, b": ", value, b"\r\n"]
    return lines


async def _send_request(exchange: Exchange, head: list[bytes], receive: Receive, declared: int | None,
                        max_body: int, deadline: asyncio.Timeout) -> tuple[_Answer, httptools.HttpResponseParser]:
    """Write the request, its body streamed; returns the parser its answer will be read with."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body, more = message.get("body", b""), message.get("more_body", False)
    if len(body) > max_body:
        raise BodyTooLarge()
    if not more:
        exchange.watch_caller(receive)
        return await _send_whole(exchange, b"".join([*head, b"content-length: %d\r\n\r\n" % len(body), body]))
    exchange.connection, _ = await exchange.connections.get(exchange.upstream)
    framing = b"transfer-encoding: chunked\r\n\r\n" if declared is None else b"content-length: %d\r\n\r\n" % declared
    exchange.connection.writer.write(b"".join([*head, framing]))
    await _send_body(exchange, body, receive, declared, max_body, deadline)
    exchange.watch_caller(receive)
    return _answer(exchange.connection)


async def _send_whole(exchange: Exchange, request: bytes) -> tuple[_Answer, httptools.HttpResponseParser]:
    """A request whose body came at once (most do): sent in one write, and sent again on a fresh
    connection if a kept one turns out to have closed before it answered anything."""
    for fresh in (False, True):
        exchange.connection, reused = await exchange.connections.get(exchange.upstream, fresh)
        exchange.connection.writer.write(request)
        answer, parser = _answer(exchange.connection)
        if not reused or await _answers(exchange, answer, parser):
            return answer, parser
        exchange.connection.abort()
    raise AssertionError("a fresh connection is never reused")


async def _send_body(exchange: Exchange, body: bytes, receive: Receive, declared: int | None, max_body: int,
                     deadline: asyncio.Timeout) -> None:
    """Write a body that comes in parts, each as it comes (chunked where the caller gave no length)."""
    assert exchange.connection is not None
    writer = exchange.connection.writer
    loop = asyncio.get_running_loop()
    total, more = len(body), True
    while True:
        if body:
            writer.write(b"%x\r\n%s\r\n" % (len(body), body) if declared is None else body)
        if not more:
            break
        if writer.transport.get_write_buffer_size() > READ_SIZE:
            try:
                await writer.drain()
            except ConnectionError as error:
                raise UpstreamFailed(f"the model server closed the connection: {error}") from None
        exchange.reading_body = True
        message = await receive()
        exchange.reading_body = False
        if message["type"] == "http.disconnect":
            raise BodyIncomplete(f"the request body broke off after {total} bytes")
        body, more = message.get("body", b""), message.get("more_body", False)
        total += len(body)
        if total > max_body:
            raise BodyTooLarge()
        deadline.reschedule(loop.time() + exchange.timeout_s)  # the caller's time to send more
    if declared is None:
        writer.write(b"0\r\n\r\n")
    elif total != declared:
        raise BodyIncomplete(f"the request body has {total} bytes, its Content-Length said {declared}")


async def _answers(exchange: Exchange, answer: _Answer, parser: httptools.HttpResponseParser) -> bool:
    """Whether a kept connection answers at all: False if it was closed before a first byte."""
    assert exchange.connection is not None
    try:
        data = await exchange.connection.reader.read(READ_SIZE)
    except ConnectionError:
        data = b""
    if not data:
        return False
    _feed(parser, data)
    return True


def _feed(parser: httptools.HttpResponseParser, data: bytes) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as error:
        raise UpstreamFailed(f"the model server's answer is not valid HTTP: {error}") from None


async def _read(exchange: Exchange) -> bytes:
    assert exchange.connection is not None
    try:
        return await exchange.connection.reader.read(READ_SIZE)
    except ConnectionError:
        return b""


async def _read_head(exchange: Exchange, answer: _Answer, parser: httptools.HttpResponseParser) -> None:
    while not answer.head_done:
        data = await _read(exchange)
        if not data:
            if exchange.caller_left:
                raise ClientGone()
            raise UpstreamFailed("the model server closed the connection without an answer")
        _feed(parser, data)


async def _stream_body(exchange: Exchange, answer: _Answer, parser: httptools.HttpResponseParser, send: Send,
                       deadline: asyncio.Timeout) -> None:
    """Send the answer's body on as it comes; raises UpstreamFailed when the model server breaks off."""
    assert exchange.connection is not None
    loop = asyncio.get_running_loop()
    # Neither a length nor chunks: the body ends when the model server closes (RFC 9112 section 6.3).
    until_close = not any(name in (b"content-length", b"transfer-encoding") for name, _ in answer.headers)
    while not answer.complete:
        if answer.body:
            await send({"type": "http.response.body", "body": answer.take(), "more_body": True})
        deadline.reschedule(loop.time() + exchange.timeout_s)  # the model server's time to write more
        data = await _read(exchange)
        if exchange.caller_left:
            raise ClientGone()
        if not data:
            if until_close:
                break
            raise UpstreamFailed("the model server broke off its answer")
        _feed(parser, data)
    exchange.settle()
    if answer.keep_alive and not until_close:
        exchange.connections.put(exchange.connection)
        exchange.connection = None
    await send({"type": "http.response.body", "body": answer.take(), "more_body": False})
