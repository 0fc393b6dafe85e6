"""The OpenAI API of a replica: ``POST /openai/v1/completions``, ``/openai/v1/chat/completions`` and
``/openai/v1/embeddings``, and ``GET /openai/v1/models``: the paths KServe's Hugging Face runtime
serves on a cluster, so that a client sees no difference. The ``model`` field names the deployment
(the replica's model name); any other name is ``model_not_found``.

KServe's own OpenAI routes (``kserve.protocol.rest.openai``) take their request and answer types
from vLLM, so they cannot even be imported without vLLM (a CUDA build of several GB). These routes
read OpenAI's request fields with pydantic models of their own (the fields a transformers model can
honour; unknown ones are ignored, as vLLM ignores them) and answer with the ``openai`` package's own
types, so the answers have exactly the shape the official client parses. A streamed answer is an
event stream (``data: {...}`` per piece, ``data: [DONE]`` at the end), each piece sent as the model
makes it. Every error is an OpenAI error object (``{"error": {"message", "type", "param", "code"}}``)
with a 4xx status for the caller's mistakes; never a stack trace.

The model behind the routes is a ``Generator`` (completions and chat) or an ``Encoder``
(embeddings), the two protocols below; ``runtimes/huggingface.py`` implements both.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import Completion, CompletionChoice, CompletionUsage, CreateEmbeddingResponse, Embedding
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion import Choice as ChatChoice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.chat.chat_completion_message import ChatCompletionMessage
from openai.types.create_embedding_response import Usage as EmbeddingUsage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PREFIX = "/openai/v1"
RequestModel = TypeVar("RequestModel", bound=BaseModel)
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /completions; chat defaults to the rest of the context


class OpenAIError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


# --- requests ---------------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """How to generate: the fields completions and chat share."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @property
    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [stop for stop in stops if stop]


class CompletionRequest(Sampling):
    prompt: str | list[str]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def as_template_input(self) -> dict[str, str]:
        """The message as a chat template reads it: role and plain text."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": self.role, "content": text}


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


# --- what the model offers ------------------------------------------------------------------------


@dataclass
class Piece:
    """Text a generation made since the last piece; the last piece says why it ended ("stop" or
    "length") and how many tokens were made in all."""

    text: str
    finish_reason: Literal["stop", "length"] | None = None
    completion_tokens: int = 0


@runtime_checkable
class Generator(Protocol):
    name: str
    context_length: int

    def encode_prompt(self, prompt: str) -> list[int]: ...

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def generate(self, prompt_ids: list[int], sampling: Sampling, max_tokens: int) -> AsyncIterator[Piece]: ...


@runtime_checkable
class Encoder(Protocol):
    name: str
    context_length: int

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    async def embed(self, texts: list[str]) -> np.ndarray: ...


# --- the routes ------------------------------------------------------------------------------------


def add_openai_routes(app: FastAPI, model: object) -> None:
    """Serve ``model`` (a Generator or an Encoder) under ``/openai/v1`` on ``app``."""
    routes = OpenAIRoutes(model)
    app.add_api_route(f"{PREFIX}/completions", routes.completions, methods=["POST"], include_in_schema=False)
    app.add_api_route(f"{PREFIX}/chat/completions", routes.chat, methods=["POST"], include_in_schema=False)
    app.add_api_route(f"{PREFIX}/embeddings", routes.embeddings, methods=["POST"], include_in_schema=False)
    app.add_api_route(f"{PREFIX}/models", routes.models, methods=["GET"], include_in_schema=False)


def _answers_errors(handler: Callable[[OpenAIRoutes, Request], Any]) -> Callable[[OpenAIRoutes, Request], Any]:
    async def answer(self: OpenAIRoutes, request: Request) -> Response:
        try:
            return await handler(self, request)
        except OpenAIError as error:
            return error.response()
    answer.__name__ = handler.__name__
    return answer


class OpenAIRoutes:
    def __init__(self, model: object) -> None:
        self.model = model
        self.name: str = getattr(model, "name", "")
        self.created = int(time.time())

    async def _read(self, request: Request, kind: type[RequestModel]) -> RequestModel:
        try:
            body = json.loads(await request.body())
        except ValueError as error:
            raise OpenAIError(400, f"the request body is not JSON: {error}") from error
        try:
            parsed = kind.model_validate(body)
        except ValidationError as error:
            first = error.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            raise OpenAIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param) from error
        if getattr(parsed, "model", self.name) != self.name:
            raise OpenAIError(404, f"The model `{parsed.model}` does not exist; this deployment serves `{self.name}`",  # type: ignore[attr-defined]
                              param="model", code="model_not_found")
        return parsed

    def _generator(self, api: str) -> Generator:
        if not isinstance(self.model, Generator):
            raise OpenAIError(400, f"the model `{self.name}` does not support {api}: it is not a text-generation model",
                              param="model", code="unsupported_task")
        return self.model

    def _budget(self, generator: Generator, prompt_ids: list[int], asked: int | None, default: int | None) -> int:
        """The tokens to make: asked for, else the default, else the rest of the context; refused
        if prompt and answer do not fit the model's context."""
        room = generator.context_length - len(prompt_ids)
        wanted = asked if asked is not None else (default if default is not None else room)
        if room <= 0 or wanted > room:
            raise OpenAIError(
                400, f"This model's maximum context length is {generator.context_length} tokens. However, you "
                f"requested {len(prompt_ids) + max(wanted, 0)} tokens ({len(prompt_ids)} in the messages, "
                f"{max(wanted, 0)} in the completion). Please reduce the length of the messages or completion.",
                param="max_tokens" if asked is not None else "messages", code="context_length_exceeded")
        return wanted

    @staticmethod
    def _single(sampling: Sampling) -> None:
        if sampling.n != 1:
            raise OpenAIError(400, "only n=1 is supported: one choice per request", param="n")

    @_answers_errors
    async def completions(self, request: Request) -> Response:
        generator = self._generator("completions")
        body = await self._read(request, CompletionRequest)
        self._single(body)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise OpenAIError(400, "one prompt per request is supported", param="prompt")
        prompt_ids = generator.encode_prompt(prompts[0])
        budget = self._budget(generator, prompt_ids, body.max_tokens, COMPLETION_DEFAULT_MAX_TOKENS)
        answer = CompletionAnswer(self.name, len(prompt_ids), body)
        return await respond(answer, generator.generate(prompt_ids, body, budget))

    @_answers_errors
    async def chat(self, request: Request) -> Response:
        generator = self._generator("chat completions")
        body = await self._read(request, ChatRequest)
        self._single(body)
        prompt_ids = generator.encode_chat([message.as_template_input() for message in body.messages])
        budget = self._budget(generator, prompt_ids, body.max_completion_tokens or body.max_tokens, None)
        answer = ChatAnswer(self.name, len(prompt_ids), body)
        return await respond(answer, generator.generate(prompt_ids, body, budget))

    @_answers_errors
    async def embeddings(self, request: Request) -> Response:
        if not isinstance(self.model, Encoder):
            raise OpenAIError(400, f"the model `{self.name}` does not support embeddings: it is not an encoder",
                              param="model", code="unsupported_task")
        body = await self._read(request, EmbeddingRequest)
        texts = [body.input] if isinstance(body.input, str) else body.input
        counts = self.model.count_tokens(texts)
        for index, count in enumerate(counts):
            if count > self.model.context_length:
                raise OpenAIError(400, f"input[{index}] has {count} tokens; this model reads at most "
                                  f"{self.model.context_length}", param="input", code="context_length_exceeded")
        vectors = await self.model.embed(texts)
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise OpenAIError(400, f"this model's embeddings have {vectors.shape[1]} dimensions; it cannot "
                              f"make {body.dimensions}", param="dimensions")
        data = [Embedding(object="embedding", index=index, embedding=[])
                for index in range(len(texts))]
        encoded = [_encode_vector(vector, body.encoding_format) for vector in vectors]
        answer = CreateEmbeddingResponse(
            object="list", model=self.name, data=data,
            usage=EmbeddingUsage(prompt_tokens=sum(counts), total_tokens=sum(counts))).model_dump()
        for item, vector in zip(answer["data"], encoded, strict=True):
            item["embedding"] = vector  # a base64 string is not what the answer type declares; the client decodes it
        return JSONResponse(answer)

    async def models(self) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.name, "object": "model", "created": self.created, "owned_by": "zeroserve"}]})


def _encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the official client asks for by default: float32, little-endian
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(float).tolist()


async def respond(answer: CompletionAnswer | ChatAnswer, pieces: AsyncIterator[Piece]) -> Response:
    """The generation's answer: an event stream as the pieces come, or one JSON object at the end."""
    if answer.streamed:
        return stream(answer.chunks(pieces))
    return JSONResponse(await answer.whole(pieces))


def stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(answer: BaseModel) -> str:
    return f"data: {answer.model_dump_json(exclude_unset=True)}\n\n"


DONE = "data: [DONE]\n\n"


class _Answer:
    """What completions and chat answers share: the id, the time, the usage."""

    prefix = ""

    def __init__(self, model: str, prompt_tokens: int, sampling: Sampling) -> None:
        self.id = f"{self.prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.streamed = sampling.stream
        self.include_usage = bool(sampling.stream_options and sampling.stream_options.include_usage)

    def usage(self, completion_tokens: int) -> CompletionUsage:
        return CompletionUsage(prompt_tokens=self.prompt_tokens, completion_tokens=completion_tokens,
                               total_tokens=self.prompt_tokens + completion_tokens)

    @staticmethod
    async def collect(pieces: AsyncIterator[Piece]) -> tuple[str, Piece]:
        texts, last = [], Piece("")
        async for piece in pieces:
            texts.append(piece.text)
            last = piece
        return "".join(texts), last


class CompletionAnswer(_Answer):
    prefix = "cmpl"

    def _completion(self, text: str, finish: str | None, usage: CompletionUsage | None = None) -> Completion:
        choice = CompletionChoice.model_construct(index=0, text=text, finish_reason=finish, logprobs=None)
        completion = Completion(id=self.id, object="text_completion", created=self.created, model=self.model,
                                choices=[choice])
        if usage is not None:
            completion.usage = usage
        return completion

    async def whole(self, pieces: AsyncIterator[Piece]) -> dict[str, Any]:
        text, last = await self.collect(pieces)
        return self._completion(text, last.finish_reason, self.usage(last.completion_tokens)).model_dump()

    async def chunks(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[str]:
        last = Piece("")
        async for last in pieces:
            yield _event(self._completion(last.text, last.finish_reason))
        if self.include_usage:
            yield _event(Completion(id=self.id, object="text_completion", created=self.created, model=self.model,
                                    choices=[], usage=self.usage(last.completion_tokens)))
        yield DONE


class ChatAnswer(_Answer):
    prefix = "chatcmpl"

    def _chunk(self, delta: ChoiceDelta | None, finish: str | None = None,
               usage: CompletionUsage | None = None) -> ChatCompletionChunk:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]  # type: ignore[arg-type]
        chunk = ChatCompletionChunk(id=self.id, object="chat.completion.chunk", created=self.created,
                                    model=self.model, choices=choices)
        if usage is not None:
            chunk.usage = usage
        return chunk

    async def whole(self, pieces: AsyncIterator[Piece]) -> dict[str, Any]:
        text, last = await self.collect(pieces)
        message = ChatCompletionMessage(role="assistant", content=text)
        choice = ChatChoice(index=0, message=message, finish_reason=last.finish_reason or "stop")
        return ChatCompletion(id=self.id, object="chat.completion", created=self.created, model=self.model,
                              choices=[choice], usage=self.usage(last.completion_tokens)).model_dump()

    async def chunks(self, pieces: AsyncIterator[Piece]) -> AsyncIterator[str]:
        yield _event(self._chunk(ChoiceDelta(role="assistant", content="")))
        last = Piece("")
        async for last in pieces:
            if last.text:
                yield _event(self._chunk(ChoiceDelta(content=last.text)))
        yield _event(self._chunk(ChoiceDelta(), last.finish_reason or "stop"))
        if self.include_usage:
            yield _event(self._chunk(None, usage=self.usage(last.completion_tokens)))
        yield DONE
