"""The description is the contract: schemathesis reads the gateway's own ``/openapi.json`` and runs every
check it has (``--checks all``) against a real zeroserve on loopback, as ``schemathesis run`` does: the
examples, coverage and fuzzing phases, 25 cases per operation, valid requests and mutated ones. No answer
may be a 5xx or one the description does not document; a request the description calls valid is not
refused with 400, one it calls invalid is refused; a 405 names in ``Allow`` every method of the path.

The configuration is the repository's ``schemathesis.toml`` (what the command line reads; it says which
operations may refuse a valid request because what it names must exist), plus what only this test knows:
its token, and the catalog's scenarios and executables as likely values. Events go to a group of their own,
so that deployments they create (POST /v2/events can) are not the ones the inference routes are tried on.
The seed is random and printed; set ``ZEROSERVE_FUZZ_SEED`` to run a failing one again.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import token_for
from schemathesis.engine import events, from_schema

from zeroserve.node import Node

GROUP = "default"
EVENTS_GROUP = "fuzz-events"
EXAMPLES = 25  # per operation and phase
PROJECT_CONFIG = Path(__file__).parents[2] / "schemathesis.toml"


def configuration(embedded: Node, token: str, seed: int) -> schemathesis.Config:
    """``schemathesis.toml`` as ``schemathesis run --checks all -n 25 --seed SEED -H ...`` would extend it."""
    assert embedded.platform is not None
    templates = embedded.platform.templates.values()
    config: dict[str, Any] = tomllib.loads(PROJECT_CONFIG.read_text())
    config["operations"] = [*config.get("operations", []), {
        "include-operation-id": "events.publish", "headers": {"AI-Resource-Group": EVENTS_GROUP}},
        # A group's event stream lasts until its client leaves: every request the fuzzer sent would wait for its
        # timeout. tests/test_group_events.py checks what it refuses and what it streams.
        {"include-operation-id": "events.stream", "enabled": False}]
    config.update({
        # No cache: failures of earlier runs are not replayed, the seed alone says what is sent.
        "seed": seed, "workers": 1, "checks": {"enabled": True}, "request-timeout": 10, "cache": {"enabled": False},
        "headers": {"Authorization": f"Bearer {token}", "AI-Resource-Group": GROUP},
        "generation": {"max-examples": EXAMPLES, "no-shrink": True, "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": False}},
        # Half the time, a scenario and an executable that exist: a request that names an unknown one is
        # refused before anything else about it is looked at.
        "dictionaries": {"scenarios": {"values": sorted({t.scenario_id for t in templates})},
                         "executables": {"values": sorted(t.name for t in templates)}},
        "parameters": {"body.scenarioId": {"dictionary": "scenarios", "probability": 0.5},
                       "body.executableId": {"dictionary": "executables", "probability": 0.5}},
    })
    return schemathesis.Config.from_dict(config)


def run(url: str, config: schemathesis.Config) -> tuple[set[str], int, list[str]]:
    """(operations, checks run, findings): one line per operation, check and failure, with a curl to repeat it."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    operations: set[str] = set()
    checks = 0
    findings: dict[tuple[str, str, str], str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            operations.add(event.recorder.label)
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    checks += 1
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        findings.setdefault((event.recorder.label, node.name, failure.title),
                                            f"{event.recorder.label}: {failure.title} ({node.name}): "
                                            f"{(failure.message or '').splitlines()[0:2]}\n    "
                                            f"{node.failure_info.code_sample[:600]}")
        elif isinstance(event, events.NonFatalError):
            findings.setdefault((event.label, "error", ""), f"{event.label}: {event.info.message[:300]}")
    return operations, checks, sorted(findings.values())


@pytest.mark.slow
async def test_schemathesis_with_every_check_finds_nothing(zeroserve: Node) -> None:
    seed = int(os.environ.get("ZEROSERVE_FUZZ_SEED") or random.randrange(2**31))
    token = await token_for(zeroserve, ["*"])
    started = time.monotonic()
    # The gateway runs on this event loop: the fuzzer's blocking requests go from a thread.
    operations, checks, findings = await asyncio.to_thread(run, zeroserve.url, configuration(zeroserve, token, seed))
    summary = (f"schemathesis, every check, seed {seed} (ZEROSERVE_FUZZ_SEED={seed} runs it again): "
               f"{len(operations)} operations, {checks} checks, {len(findings)} findings, "
               f"{time.monotonic() - started:.0f} s")
    print(summary)
    assert len(operations) >= 40, f"the description lists only {sorted(operations)}"
    assert findings == [], summary + "\n" + "\n".join(findings)
    assert zeroserve.platform is not None
    assert await zeroserve.platform.store.deployments.list(GROUP) == [], "a fuzzed request created a deployment"
