"""A custom predictor for the data-plane tests (zeroserve's ``custom`` runtime): what a model server
can do to a gateway, on request. ``predict`` takes a JSON object and, by its fields:

- ``{"echo": true}``: answers the request headers it received;
- ``{"events": N, "gate": PATH}``: an event stream (``data: i``), written one event at a time: the
  first at once, each next one only once the file ``PATH`` exists (so a test can show that event 0
  reached it before the stream could go on);
- ``{"events": N, "every": S}``: N events, one each S seconds;
- ``{"events": N, "die_after": K}``: K events, then the process exits mid-stream;
- ``{"sleep": S}``: answers after S seconds;
- anything else (``padding`` for a large body): how many bytes its fields held.
"""

import asyncio
import os
from pathlib import Path

from kserve import Model


class Probe(Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)

    def load(self) -> bool:
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        if payload.get("echo"):
            return {"headers": dict(headers or {})}
        if "events" in payload:
            return self.events(payload)
        if "sleep" in payload:
            await asyncio.sleep(payload["sleep"])
            return {"slept": payload["sleep"]}
        return {"sizes": {key: len(str(value)) for key, value in payload.items()}}

    async def events(self, payload):
        for number in range(payload["events"]):
            if number and payload.get("gate"):
                # The gate is a file another process creates: polled (a stat of a local file is quick).
                while not Path(payload["gate"]).exists():  # noqa: ASYNC110, ASYNC240
                    await asyncio.sleep(0.01)
            if number and payload.get("every"):
                await asyncio.sleep(payload["every"])
            if number == payload.get("die_after"):
                os._exit(1)
            yield f"data: {number}\n\n"
