"""The serving templates a resource group may deploy, its executables: the operator's, read from
``settings.templates_dir`` at start-up and the same for every group, and those its users add while
zeroserve runs, synced from git by an application (``templates/applications.py``) or applied with
``zeroserve templates apply``. The added ones are records of a KV bucket, so every process (gateway,
functions) reads the same ones the moment they are written, and none needs a restart.

A template added for every group (``ALL_GROUPS``) is seen by each; one carrying SAP's label
``ai.sap.com/resourceGroup`` (or applied in a group) by that group only, where it goes before an added
one of every group with the same name. An operator's template name cannot be taken: those keep
working in every group, whatever is added. ``check_template`` is what every added template passes
first, and what it says of a broken one names the file's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from zeroserve.core.store import Registry, Store, now
from zeroserve.errors import InvalidConfiguration
from zeroserve.events import ID_PATTERN, is_id
from zeroserve.settings import Settings
from zeroserve.templates.plans import ResourcePlan
from zeroserve.templates.render import render
from zeroserve.templates.serving import ServingTemplate

# SAP's label that keeps a template to one resource group.
RESOURCE_GROUP_LABEL = "ai.sap.com/resourceGroup"
# The records' key for templates of every group: not a group id (those have no '_').
ALL_GROUPS = "_all"
# Where in a ServingTemplate document each field of ``ServingTemplate`` is written.
_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "name": ("metadata", "name"), "parameters": ("spec", "inputs", "parameters"),
    "artifacts": ("spec", "inputs", "artifacts"), "template": ("spec", "template"),
}
_BRACES = re.compile(r"\{\{[^}]*\}\}")
_QUOTED = re.compile(r"'([A-Za-z0-9_.-]+)'")


class AddedTemplate(BaseModel):
    """A serving template added while zeroserve runs: its YAML as written, and where it came from."""

    name: str
    # A resource group, or ALL_GROUPS.
    scope: str
    # The application that synced it, or None when it was applied (``zeroserve templates apply``).
    application: str | None = None
    file: str
    commit: str | None = None
    text: str
    created_at: datetime = Field(default_factory=now)
    modified_at: datetime = Field(default_factory=now)

    @property
    def origin(self) -> str:
        return f"application {self.application}" if self.application else "applied"


@dataclass(frozen=True)
class Executable:
    """A template as one group sees it, with when it came to be and where from."""

    template: ServingTemplate
    created_at: datetime
    modified_at: datetime
    origin: str


class TemplateRefused(InvalidConfiguration):
    """A template that cannot be added: the file, the line and the reason."""

    reason = "TemplateRefused"

    def __init__(self, file: str, line: int | None, problem: str) -> None:
        super().__init__(f"{file}:{line or 1}: {problem}")
        self.file, self.line, self.problem = file, line or 1, problem


def check_template(
    text: str, file: str, *, plans: dict[str, ResourcePlan], settings: Settings,
) -> tuple[ServingTemplate, str | None]:
    """The template and the resource group its label names (None: every group), or TemplateRefused.

    Parsed and checked as the operator's templates are, then rendered once with its defaults (when
    every parameter has one) and a stand-in model, so that an InferenceService KServe would refuse is
    refused now, not at its first deployment."""
    try:
        template = ServingTemplate.from_yaml(text, source=file)
    except InvalidConfiguration as error:
        problem = error.message.removeprefix(f"{file}: ").removeprefix(f"{file} ")
        if isinstance(error.__cause__, yaml.MarkedYAMLError):  # the line is said apart: yaml's own words, on one line
            cause = error.__cause__
            problem = problem.removesuffix(str(cause)) + "; ".join(filter(None, (cause.context, cause.problem)))
        raise TemplateRefused(file, _line_of_failure(text, error.__cause__, problem), problem) from None
    document = yaml.safe_load(text)
    group = (document["metadata"].get("labels") or {}).get(RESOURCE_GROUP_LABEL)
    if not is_id(template.name):
        raise TemplateRefused(file, _line_at(text, ("metadata", "name")),
                              f"metadata.name {template.name!r} must match {ID_PATTERN} here (an executable id)")
    if group is not None and not (isinstance(group, str) and is_id(group)):
        raise TemplateRefused(file, _line_at(text, ("metadata", "labels", RESOURCE_GROUP_LABEL)),
                              f"label {RESOURCE_GROUP_LABEL}: {group!r} is not a resource group id")
    if all(parameter.default is not None for parameter in template.parameters):
        try:
            render(template, deployment_id="template-check", group=group or "default", parameters={},
                   artifacts={artifact.name: "s3://template-check/model" for artifact in template.artifacts},
                   plans=plans, settings=settings)
        except InvalidConfiguration as error:
            raise TemplateRefused(file, _line_in_spec(text, error.message),
                                  f"rendered with its defaults: {error.message}") from None
    return template, group


def _line_of_failure(text: str, cause: BaseException | None, problem: str) -> int | None:
    if isinstance(cause, yaml.MarkedYAMLError):
        mark = cause.problem_mark or cause.context_mark
        return mark.line + 1 if mark is not None else None
    if not isinstance(cause, ValidationError):
        return None
    first = cause.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    if cause.title == ServingTemplate.__name__:  # the parsed template's own checks: its field names
        snippet = _BRACES.search(problem)
        if snippet and snippet[0] in text:
            return text[: text.index(snippet[0])].count("\n") + 1
        loc = (*_FIELD_PATHS.get(str(loc[0]), ("spec",)), *loc[1:]) if loc else ("spec",)
    return _line_at(text, loc)


def _line_in_spec(text: str, message: str) -> int | None:
    """The line of the InferenceService spec a render problem names (a quoted field, as jsonschema quotes
    it), else the line where the spec starts."""
    start = _line_at(text, ("spec", "template", "spec")) or 1
    lines = text.splitlines()
    for quoted in _QUOTED.findall(message):
        for number in range(start, len(lines) + 1):
            if re.search(rf"(^|[\s{{,]){re.escape(quoted)}\s*:", lines[number - 1]):
                return number
    return start


def _line_at(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of ``loc`` the document has (1-based)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


class Executables:
    """The templates each group may deploy: the operator's, and those added (``AddedTemplate`` records)."""

    def __init__(self, shipped: dict[str, ServingTemplate], added: Registry[AddedTemplate]) -> None:
        self.shipped = shipped
        self.added = added
        self.started_at = now()
        # Parsed once per text: a record is read on every lookup, parsing it each time would cost more.
        self._parsed: dict[str, ServingTemplate] = {}
        # Every record as last read, and the bucket's last sequence then: read again only once it moved.
        self._records: dict[tuple[str, str], AddedTemplate] = {}
        self._sequence = -1

    @classmethod
    async def open(cls, store: Store, shipped: dict[str, ServingTemplate]) -> Executables:
        return cls(shipped, await store.registry("templates", AddedTemplate))

    def parse(self, record: AddedTemplate) -> ServingTemplate:
        template = self._parsed.get(record.text)
        if template is None:
            if len(self._parsed) > 1024:
                self._parsed.clear()
            template = self._parsed[record.text] = ServingTemplate.from_yaml(record.text, source=record.file)
        return template

    async def records(self) -> dict[tuple[str, str], AddedTemplate]:
        """Every added template by (scope, name), as the bucket holds it now: one question to NATS (has
        anything been written since the last read?) and the records read again only when it has."""
        info = await self.added.js.stream_info(f"KV_{self.added.bucket}")
        if info.state.last_seq != self._sequence:
            # A write between the two reads makes the next call read again: never a stale answer.
            self._records = {(r.scope, r.name): r for r in await self.added.list()}
            self._sequence = info.state.last_seq
        return self._records

    async def of(self, group: str) -> dict[str, Executable]:
        """Every template ``group`` may deploy, by name."""
        found = {name: Executable(template, self.started_at, self.started_at, "operator")
                 for name, template in self.shipped.items()}
        records = await self.records()
        for scope in (ALL_GROUPS, group):  # the group's own after, so they go first
            for (where, name), record in sorted(records.items()):
                if where == scope and name not in self.shipped:
                    found[name] = self._executable(record)
        return found

    async def templates(self, group: str) -> dict[str, ServingTemplate]:
        return {name: executable.template for name, executable in (await self.of(group)).items()}

    async def get(self, group: str, name: str) -> ServingTemplate | None:
        """The template ``name`` as ``group`` sees it, read now (a sync a moment ago is seen)."""
        if name in self.shipped:
            return self.shipped[name]
        records = await self.records()
        record = records.get((group, name)) or records.get((ALL_GROUPS, name))
        return None if record is None else self.parse(record)

    async def scenario_of(self, group: str, name: str) -> str | None:
        """The scenario of executable ``name`` as ``group`` sees it; None when there is none."""
        template = await self.get(group, name)
        return None if template is None else template.scenario_id

    def _executable(self, record: AddedTemplate) -> Executable:
        return Executable(self.parse(record), record.created_at, record.modified_at, record.origin)

    async def apply(self, group: str, text: str, file: str, plans: dict[str, ResourcePlan],
                    settings: Settings) -> tuple[ServingTemplate, bool]:
        """Add or replace a template of ``group`` (``zeroserve templates apply``): (it, whether it changed)."""
        template, label = check_template(text, file, plans=plans, settings=settings)
        if label is not None and label != group:
            raise TemplateRefused(file, _line_at(text, ("metadata", "labels", RESOURCE_GROUP_LABEL)),
                                  f"label {RESOURCE_GROUP_LABEL} names {label}, but it is applied in {group}")
        if template.name in self.shipped:
            raise TemplateRefused(file, _line_at(text, ("metadata", "name")),
                                  f"{template.name!r} is an operator's template: choose another metadata.name")
        changed = False

        def put(current: AddedTemplate | None) -> AddedTemplate | None:
            nonlocal changed
            if current is not None and current.application is not None:
                raise TemplateRefused(file, _line_at(text, ("metadata", "name")), f"{template.name!r} is synced "
                                      f"by application {current.application}: change it in its repository")
            if current is not None and current.text == text:
                return None
            changed = True
            return AddedTemplate(name=template.name, scope=group, file=file, text=text,
                                 created_at=current.created_at if current else now())

        await self.added.update(group, template.name, put)
        return template, changed

    async def remove_applied(self, group: str, name: str) -> bool:
        record = await self.added.get(group, name) if is_id(name) else None
        if record is None or record.application is not None:
            return False
        await self.added.delete(group, name)
        return True
