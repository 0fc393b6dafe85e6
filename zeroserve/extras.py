"""The optional parts of zeroserve (the pip extras of pyproject.toml) and how to tell one is missing.

``pip install zeroserve`` is the client and the CLI; running the platform needs ``zeroserve[server]``
and the torch runtimes ``zeroserve[torch]``. What needs an extra asks ``missing`` first, so that a
user reads which extra to install, not an ImportError from deep inside.
"""

from __future__ import annotations

import importlib.util

# The modules the platform itself imports (``zeroserve up``, ``--demo`` trains with scikit-learn).
SERVER_MODULES = ("nats", "kserve", "fastapi", "uvicorn", "jwt", "sklearn", "pythonjsonlogger", "opentelemetry")


def missing(modules: tuple[str, ...]) -> list[str]:
    """Those of ``modules`` that cannot be imported here (not installed)."""
    return [module for module in modules if importlib.util.find_spec(module) is None]


def install_hint(extra: str) -> str:
    """The one command that installs ``extra``."""
    return f"pip install 'zeroserve[{extra}]'"
