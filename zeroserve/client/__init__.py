"""The Python client of zeroserve's HTTP API (SAP AI API v2 and zeroserve's extensions): ``Client``
(blocking, ``sync``) and ``AsyncClient`` (asyncio, ``asyncio``) offer the same operations, each written once
in ``operations`` as a ``Call`` (``calls``) that both only send (``transport``), with a token from
``credentials``; every failure, the server's or the network's, is an ``ApiError`` (``errors``), results are
the pydantic records of ``records``, and a deployment's live events come as the streams of ``streams``."""

from zeroserve.client.asyncio import AsyncClient
from zeroserve.client.calls import Call, StreamCall, operation, stream
from zeroserve.client.credentials import REFRESH_MARGIN_S, Connection, connection
from zeroserve.client.errors import ApiError, NotConfigured
from zeroserve.client.operations import SERVING_SCENARIO, SOURCE
from zeroserve.client.records import (
    ApiClient,
    ApiModel,
    Artifact,
    ArtifactBinding,
    ArtifactMetrics,
    ClientCredentials,
    Configuration,
    Created,
    Deployment,
    Event,
    Executable,
    ExecutableArtifact,
    ExecutableParameter,
    LogRecord,
    Metric,
    MetricLabel,
    ObjectStoreSecret,
    ParameterBinding,
    Published,
    ResourceGroup,
    Scenario,
    Subscription,
)
from zeroserve.client.streams import AsyncEventStream, EventStream
from zeroserve.client.sync import Client
from zeroserve.client.transport import DEFAULT_GROUP

__all__ = [
    "DEFAULT_GROUP", "REFRESH_MARGIN_S", "SERVING_SCENARIO", "SOURCE",
    "ApiClient", "ApiError", "ApiModel", "Artifact", "ArtifactBinding", "ArtifactMetrics", "AsyncClient",
    "AsyncEventStream", "Call", "Client", "ClientCredentials", "Configuration", "Connection", "Created",
    "Deployment", "Event", "EventStream", "Executable", "ExecutableArtifact", "ExecutableParameter", "LogRecord",
    "Metric", "MetricLabel", "NotConfigured", "ObjectStoreSecret", "ParameterBinding", "Published",
    "ResourceGroup", "Scenario", "StreamCall", "Subscription", "connection", "operation", "stream",
]
