"""zeroserve: event-driven, scale-to-zero model serving.

``from zeroserve import Client`` (or ``AsyncClient``) is the Python client of the HTTP API; it is
imported on first use so that ``import zeroserve.events`` in a function stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroserve.client import ApiError, AsyncClient, Client

__all__ = ["ApiError", "AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from zeroserve import client

        return getattr(client, name)
    raise AttributeError(f"module 'zeroserve' has no attribute {name!r}")
