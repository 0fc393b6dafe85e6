"""Bad input over HTTP: schemathesis reads the gateway's own ``/openapi.json`` and sends every
operation generated requests, valid ones and mutated ones (wrong types, missing fields, values
outside the patterns), to a real zeroserve on loopback. No answer may be a 5xx, and every answer
must be one the description documents: its status code, its content type and its body's schema.

One pass carries a token for every group and ``AI-Resource-Group: default``, so that requests get
past the token check and the group check into the handlers; a smaller one carries no token, or
the garbage schemathesis makes of one, and every protected operation must refuse it with 401.

The inference proxy (``/v2/inference/deployments/{id}/...``) is fuzzed too: it starts a model
server only for a deployment that exists, and none can here. A deployment needs a configuration
id, which the gateway generates (a UUID) and only the stateful phase, not run here, could learn;
the test checks at the end that no deployment came to be.

Generation is derandomized, examples are capped per operation and failures are collected rather
than raised, so that hypothesis never shrinks: the run takes the same cases, and about the same
time, every time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import requests
import schemathesis
from conftest import token_for
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from zeroserve.gateway.app import PUBLIC
from zeroserve.node import Node

# A 5xx, or an answer the description does not promise.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
GROUP = "default"
EXAMPLES_WITH_TOKEN = 12  # per operation and generation mode (positive, negative)
EXAMPLES_WITHOUT_TOKEN = 2  # per operation and generation mode
REQUEST_TIMEOUT_S = 10


def catalog_known(embedded: Node) -> schemathesis.Config:
    """Half the time, a scenario and an executable that exist: a request that names an unknown one is
    refused before anything else about it is looked at (its URL, its bindings)."""
    assert embedded.platform is not None
    templates = embedded.platform.templates.values()
    return schemathesis.Config.from_dict({
        "dictionaries": {"scenarios": {"values": sorted({t.scenario_id for t in templates})},
                         "executables": {"values": sorted(t.name for t in templates)}},
        "parameters": {"body.scenarioId": {"dictionary": "scenarios", "probability": 0.5},
                       "body.executableId": {"dictionary": "executables", "probability": 0.5}},
    })


def budget(examples: int) -> settings:
    # No shrinking (a failure is recorded, not raised), no example database, same cases every run.
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


@dataclass
class Finding:
    operation: str
    status: int
    failures: list[str]
    curl: str

    def __str__(self) -> str:
        curl = self.curl if len(self.curl) <= 600 else self.curl[:600] + " [...]"
        return f"{self.operation} answered {self.status}: {'; '.join(self.failures)}\n    {curl}"


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    findings: dict[tuple[str, int, str], Finding] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        # One line per operation, status and kind of failure: a bug found forty times is one bug.
        self.findings.setdefault((finding.operation, finding.status, finding.failures[0]), finding)

    def summary(self, seconds: float) -> str:
        return (f"API fuzz: {len(self.operations)} operations, {self.cases} cases generated, "
                f"{len(self.findings)} failures, {seconds:.1f} s")


def fuzz(schema: schemathesis.BaseSchema, report: Report, token: str | None, modes: list[GenerationMode],
         examples: int) -> None:
    """Every operation, ``examples`` cases per mode; what fails goes to ``report``. Blocking: run in a thread."""
    session = requests.Session()  # keep-alive: a connection per case would cost more than the case
    # With a token, ours replaces the one schemathesis generates; without, its garbage (or nothing) is sent.
    sent = {"Authorization": f"Bearer {token}"} if token else None

    def send(case: Case) -> None:
        report.cases += 1
        response = case.call(session=session, headers=sent, timeout=REQUEST_TIMEOUT_S)
        failures = []
        try:
            case.validate_response(response, checks=CHECKS, headers=sent)
        except FailureGroup as group:
            failures = [f"{failure.title}: {failure.message.splitlines()[0] if failure.message else ''}"
                        for failure in group.exceptions]
        if not token and case.operation.path not in PUBLIC and response.status_code != 401:
            failures.append(f"no valid token, yet {response.status_code} rather than 401")
        if failures:
            report.add(Finding(case.operation.label, response.status_code, failures,
                               case.as_curl_command(headers=sent)))

    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations.add(operation.label)
        declared = {parameter.name for parameter in operation.headers}
        fixed = {"AI-Resource-Group": GROUP} if token and "AI-Resource-Group" in declared else None
        for mode in modes:
            try:
                budget(examples)(given(case=operation.as_strategy(mode, headers=fixed))(send))()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE, f"no valid request for {operation.label} could be made"
                # Nothing to get wrong: no parameters, no body (GET /healthz, GET /metrics, ...).
    session.close()


async def test_no_operation_answers_bad_input_with_a_5xx_or_an_undocumented_answer(zeroserve: Node) -> None:
    token = await token_for(zeroserve, ["*"])
    started = time.monotonic()
    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{zeroserve.url}/openapi.json",
                                     config=catalog_known(zeroserve))
    report = Report()
    # The gateway runs on this event loop: the fuzzer's blocking requests go from a thread.
    await asyncio.to_thread(fuzz, schema, report, token, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                            EXAMPLES_WITH_TOKEN)
    await asyncio.to_thread(fuzz, schema, report, None, [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                            EXAMPLES_WITHOUT_TOKEN)
    summary = report.summary(time.monotonic() - started)
    print(summary)

    assert len(report.operations) >= 40, f"the description lists only {sorted(report.operations)}"
    failures = len(report.findings)
    found = "\n".join(str(finding) for finding in sorted(report.findings.values(), key=lambda f: f.operation))
    assert failures == 0, f"{summary}\n{found}"
    assert zeroserve.platform is not None
    assert await zeroserve.platform.store.deployments.list(GROUP) == [], "a fuzzed request created a deployment"
