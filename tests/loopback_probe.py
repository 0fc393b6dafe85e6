"""Run inside a test network namespace: start a replica, then call it on loopback and on the
namespace's other address. Prints what each call got, as JSON.

    python tests/loopback_probe.py MODEL_DIR OTHER_ADDRESS
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx


def main(model_dir: str, other: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    replica = subprocess.Popen(
        [sys.executable, "-m", "zeroserve.serving.runtimes.server", "--model-format", "sklearn", "--model-name", "iris",
         "--model-dir", model_dir, "--listen-fd", str(listener.fileno())],
        pass_fds=(listener.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    listener.close()
    result: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                result["loopback"] = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.05)
        # Its own port, and kserve's defaults (HTTP 8080, gRPC 8081) in case it opened them too.
        for name, probe_port in (("other", port), ("other:8080", 8080), ("other:8081", 8081)):
            try:
                socket.create_connection((other, probe_port), timeout=2).close()
                result[name] = "connected"
            except ConnectionRefusedError:
                result[name] = "refused"
            except OSError as error:
                result[name] = f"error: {error}"
    finally:
        replica.terminate()
        replica.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
