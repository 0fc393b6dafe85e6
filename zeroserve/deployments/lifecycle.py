"""The deployment lifecycle in one place: SAP AI Core's statuses, the allowed moves, who may stop,
delete or reconfigure a deployment (the guards the gateway and the functions both call), how a
``deployment.status`` event folds into the stored record (``project``), how a failed request ends
(``applying``), and ``Deployments``, the one writer of a status. UNKNOWN -> PENDING -> RUNNING;
PENDING/RUNNING -> STOPPING -> STOPPED; PENDING/RUNNING -> DEAD on failure; a new request for a
STOPPED or DEAD deployment starts it again (PENDING). ``Deployments.transition`` checks the move,
folds it into the record and announces it as a ``deployment.status`` event, so the record and the
events always agree; ``Deployments.claim`` fences off redelivered commands that a later one overtook.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from nats.js.errors import KeyNotFoundError, NoKeysError

from zeroserve.core import metrics
from zeroserve.core.bus import Bus
from zeroserve.core.store import Configuration, Deployment, Registry, Store, now
from zeroserve.errors import DeploymentNotFound, InvalidTransition, Rejected, reason_of
from zeroserve.events import (
    ArtifactBinding,
    DeploymentCommand,
    DeploymentDeleted,
    DeploymentRequested,
    DeploymentStatus,
    ParameterBinding,
    Status,
    content_id,
    new_event,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from zeroserve.core.runner import Context

    # The scenario of an executable as a group sees it (None: no such executable).
    ScenarioOf = Callable[[str, str], Awaitable[str | None]]

log = logging.getLogger(__name__)

SOURCE = "/zeroserve/control-plane"

# SAP's moves, plus two of zeroserve's: UNKNOWN -> DEAD (a request refused before it is pending,
# e.g. an unknown artifact) and STOPPED/DEAD -> PENDING (the same id requested again starts it
# anew). A move to the same status records new details (replicas, URL) without a new status.
ALLOWED: dict[Status, set[Status]] = {
    Status.UNKNOWN: {Status.PENDING, Status.DEAD},
    Status.PENDING: {Status.PENDING, Status.RUNNING, Status.DEAD, Status.STOPPING},
    Status.RUNNING: {Status.RUNNING, Status.DEAD, Status.STOPPING},
    Status.STOPPING: {Status.STOPPING, Status.STOPPED},
    Status.STOPPED: {Status.PENDING},
    Status.DEAD: {Status.PENDING, Status.DEAD},
}
STOPPABLE = {Status.PENDING, Status.RUNNING}
DELETABLE = {Status.UNKNOWN, Status.STOPPED, Status.DEAD}
# A new configuration is applied in place while the deployment runs (or is on its way to).
RECONFIGURABLE = {Status.PENDING, Status.RUNNING}
# A stream sequence no event reaches: the mark of an UNKNOWN deployment whose deletion the API has
# accepted, so that its request, if handled after that, is out of date (see reserve_deletion).
DELETING = 2**62


def check_transition(deployment: Deployment, status: Status) -> None:
    if status not in ALLOWED[deployment.status]:
        raise InvalidTransition(
            f"deployment {deployment.id} is {deployment.status.value}: it cannot become {status.value}"
        )


def can_stop(deployment: Deployment) -> bool:
    return deployment.status in STOPPABLE


def can_delete(deployment: Deployment) -> bool:
    return deployment.status in DELETABLE


def check_can_stop(deployment: Deployment) -> None:
    if not can_stop(deployment):
        raise InvalidTransition(f"deployment {deployment.id} is {deployment.status.value}: only PENDING or "
                                "RUNNING deployments can be stopped"
                                + (" (it can be deleted)" if can_delete(deployment) else ""))


def check_can_delete(deployment: Deployment) -> None:
    if not can_delete(deployment):
        raise InvalidTransition(f"deployment {deployment.id} is {deployment.status.value}: only UNKNOWN, "
                                "STOPPED or DEAD deployments can be deleted"
                                + (" (stop it first)" if can_stop(deployment) else ""))


def check_can_reconfigure(deployment: Deployment) -> None:
    if deployment.status not in RECONFIGURABLE:
        raise InvalidTransition(f"deployment {deployment.id} is {deployment.status.value}: its configuration "
                                "can change only while it is RUNNING or PENDING")


def with_spec(record: Deployment, request: DeploymentRequested, isvc: dict[str, Any]) -> Deployment:
    """The record once ``request`` is applied: what was asked for and what it rendered to."""
    spec: dict[str, Any] = {
        "executable_id": request.executable_id, "configuration_id": request.configuration_id,
        "scenario_id": request.scenario_id, "parameters": request.parameters,
        "input_artifacts": request.input_artifacts, "ttl": request.ttl, "inference_service": isvc,
    }
    if record.inference_service is not None:  # it ran before: this is an update
        spec["last_operation"] = "UPDATE"
        if record.configuration_id != request.configuration_id:
            spec["latest_running_configuration_id"] = record.configuration_id
    return record.model_copy(update=spec)


def project(record: Deployment, event: DeploymentStatus) -> Deployment:
    """The record after one status event: the projection rule, in one place."""
    changes = event.model_dump(exclude={"id"}, exclude_unset=True)
    if event.status != record.status:
        changes["status_changed_at"] = now()
        if event.status == Status.PENDING:
            # Submitted (again, after a STOPPED or DEAD): the times of the last run no longer apply.
            changes.update(submitted_at=now(), started_at=None, completed_at=None)
        elif event.status == Status.RUNNING:
            changes["started_at"] = now()
        elif event.status in (Status.STOPPED, Status.DEAD):
            changes["completed_at"] = now()
    if event.target_status != record.target_status and event.target_status in ("STOPPED", "DELETED"):
        changes["last_operation"] = "UPDATE" if event.target_status == "STOPPED" else "DELETE"
    # A reason describes the status it came with; a new status without one clears it.
    if "reason" not in changes:
        changes["reason"] = None
    if "message" not in changes:
        changes["message"] = None
    return record.model_copy(update={**changes, "modified_at": now()})


@contextlib.asynccontextmanager
async def applying(ctx: Context) -> AsyncIterator[None]:
    """Apply a request to the claimed deployment; how a failure of it ends is the lifecycle's rule.

    A deployment that does not serve yet goes DEAD with the reason: at once when the request is
    refused (``Rejected``), on the final attempt for any other failure (its status must not stay
    PENDING), and until then the failure is logged and retried. A serving deployment keeps its
    previous version; the refusal or the failure is logged. The failure goes on to the runner.
    """
    id, serving = ctx.deployment.id, ctx.deployment.status == Status.RUNNING
    try:
        yield
    except Rejected as refused:
        if serving:
            await ctx.log(id, f"update refused, the previous version keeps serving: {refused}")
        else:
            await ctx.set_status(id, Status.DEAD, reason=refused.reason, message=refused.message)
        raise
    except Exception as failed:
        reason, message = reason_of(failed)
        if ctx.final_attempt and not serving:
            await ctx.set_status(id, Status.DEAD, reason=reason, message=message)
        else:
            await ctx.log(id, f"could not apply the deployment, will retry: {reason}: {message}")
        raise


async def record_applied(ctx: Context, request: DeploymentRequested, isvc: dict[str, Any]) -> None:
    """Record the spec just applied (a restart re-applies it); then keep a stop or delete that overtook it.

    Events about one deployment run in turn within one runner, not across runners: another runner
    may have claimed a stop (or a stop and a delete) of this deployment since this request was
    claimed, and its annotation (or deletion) may have reached the InferenceService before this
    write did, which would leave it serving under a STOPPED record. The stop records its target
    (STOPPED) before it annotates, and this check is a compare-and-set write made after the
    InferenceService was written: if the stop's annotation came first, the check sees its target,
    and the stop is done again here; if it came after, it stands. A deployment deleted meanwhile
    loses the InferenceService this request (re)made.
    """
    id = request.id
    try:
        saved = await ctx.deployments.save_spec(ctx.group, request, isvc)
    except DeploymentNotFound:
        # Claimed for this request, so gone since: deleted by a later command (read from the history,
        # not a possibly stale copy), whose deletion this apply may have undone.
        if await ctx.deployments.deleted_later(ctx.group, id, ctx.sequence) is None:
            raise
        await ctx.backend.delete(ctx.group, id)
        await ctx.log(id, "deleted while this request was applied: its InferenceService removed again")
        return
    if saved.sequence > ctx.sequence and saved.target_status == "STOPPED":
        await ctx.backend.stop(ctx.group, id)
        await ctx.log(id, "stopped while this request was applied: stopped again")


class Deployments:
    """Status changes of deployments, recorded in the store and announced on the bus."""

    def __init__(self, store: Store, bus: Bus, base_url: str, scenario_of: ScenarioOf | None = None) -> None:
        self.store = store
        self.bus = bus
        self.base_url = base_url
        self.scenario_of = scenario_of

    def url(self, id: str) -> str:
        """SAP's deployment URL shape; it never changes for the life of the deployment."""
        return f"{self.base_url}/v2/inference/deployments/{id}"

    async def claim(self, group: str, id: str, sequence: int, *, deleting: bool = False) -> Deployment | None:
        """Mark the deployment as acted on by the lifecycle event at stream ``sequence``; the record.

        None if a later event (a stop after this request, say) has acted on it already: this one
        is a redelivery that arrives too late and must change nothing. ``deleting``: the claim of a
        ``deployment.deleted``, which may take a deployment reserved for deletion.
        """
        stale = False

        def change(record: Deployment | None) -> Deployment | None:
            nonlocal stale
            if record is None:
                raise DeploymentNotFound(f"no deployment {id} in resource group {group}")
            stale = record.sequence > sequence and not (deleting and record.sequence == DELETING)
            return None if stale or record.sequence == sequence else record.model_copy(update={"sequence": sequence})

        try:
            claimed = await self.store.deployments.update(group, id, change)
        except DeploymentNotFound:
            if await self.deleted_later(group, id, sequence):
                return None
            raise
        return None if stale else claimed

    async def claim_for(self, group: str, command: DeploymentCommand, sequence: int) -> Deployment | None:
        """The deployment a command at stream ``sequence`` is about, claimed for it (see ``claim``).

        A request records a new deployment (UNKNOWN, announced) first, claimed as it is made. A delete
        is claimed before the deployment goes, so that a request handled after it (the API deletes
        UNKNOWN deployments, whose request may still be queued) is out of date and creates nothing.
        """
        if isinstance(command, DeploymentRequested):
            deployment, created = await self._request(group, command, sequence)
            if created:  # written with this sequence just now: that write is the claim
                return deployment
        return await self.claim(group, command.id, sequence, deleting=isinstance(command, DeploymentDeleted))

    async def reserve_deletion(self, group: str, id: str) -> None:
        """Before a delete of an UNKNOWN deployment is accepted: its request, not handled yet, must
        then never deploy it, whichever of the two events is handled first. InvalidTransition if it
        has left UNKNOWN meanwhile, or if its request has been picked up (claimed) already."""

        def change(record: Deployment | None) -> Deployment:
            if record is None:
                raise DeploymentNotFound(f"no deployment {id} in resource group {group}")
            if record.status != Status.UNKNOWN:
                check_can_delete(record)
                # STOPPED or DEAD already: its request was handled, a delete asked now is no race.
                raise InvalidTransition(f"deployment {id} became {record.status.value} meanwhile: ask again to "
                                        "delete it")
            if record.sequence not in (0, DELETING):
                # Its request has been claimed (picked up): it is being deployed and will leave UNKNOWN.
                raise InvalidTransition(f"deployment {id} is being deployed: stop it once it is PENDING or "
                                        "RUNNING, or delete it once it is DEAD")
            return record.model_copy(update={"sequence": DELETING})

        await self.store.deployments.update(group, id, change)

    async def request(self, group: str, request: DeploymentRequested, sequence: int = 0) -> Deployment:
        """The deployment a request is about: created (UNKNOWN, announced) if it is new."""
        return (await self._request(group, request, sequence))[0]

    async def _request(self, group: str, request: DeploymentRequested, sequence: int) -> tuple[Deployment, bool]:
        """``request``'s deployment, and whether this call created it."""
        existing, deleted = await self._lookup(group, request.id)
        if existing is not None:
            if existing.status == Status.UNKNOWN and existing.sequence == sequence:
                # Made by this request, which runs again: the record was written, the announcement
                # may not have been (NATS went away between the two). Same id: dropped if it was.
                await self._announce_created(group, existing)
            return existing, False
        # Deleted by a later event (the API allows deleting an UNKNOWN deployment, so a delete can be
        # handled before the request that created it): not created again; claim() then says stale.
        if deleted:
            gone = await self.deleted_later(group, request.id, sequence)
            if gone is not None:
                return gone, False
        # What the API shows at once (configurationId is required there, the URL never changes).
        if request.configuration_id is None:
            request = await self.configured(group, request)
        fresh = Deployment(
            id=request.id, group=group, executable_id=request.executable_id, sequence=sequence,
            configuration_id=request.configuration_id, scenario_id=request.scenario_id, ttl=request.ttl,
            parameters=request.parameters, input_artifacts=request.input_artifacts,
            deployment_url=self.url(request.id), last_operation="CREATE",
        )
        stored, created = await self.store.deployments.create(group, request.id, fresh)
        if created:
            await self._announce_created(group, fresh)
        return stored, created

    async def _lookup(self, group: str, id: str) -> tuple[Deployment | None, bool]:
        """The record, and whether its key's last entry is a deletion: one read."""
        try:
            entry = await self.store.deployments.kv.get(Registry.key(group, id))
        except KeyNotFoundError as missing:
            return None, getattr(missing, "entry", None) is not None
        if entry.value is None:
            return None, False
        return Deployment.model_validate_json(entry.value), False

    async def configured(self, group: str, request: DeploymentRequested,
                         made: Deployment | None = None) -> DeploymentRequested:
        """A request made by an event names no configuration, but SAP's clients read one on every
        deployment (configurationId is required): record the configuration the request amounts to. The
        same executable, parameters and artifacts give the same configuration, whoever asks again.
        ``made``: the deployment this request created (UNKNOWN still), which records it already."""
        if (made is not None and made.status == Status.UNKNOWN and made.configuration_id is not None
                and request.scenario_id in (None, made.scenario_id)
                and (made.executable_id, made.parameters, made.input_artifacts)
                == (request.executable_id, request.parameters, request.input_artifacts)):
            return request.model_copy(update={"configuration_id": made.configuration_id,
                                              "scenario_id": made.scenario_id})
        scenario = request.scenario_id
        if scenario is None and self.scenario_of is not None:
            scenario = await self.scenario_of(group, request.executable_id)
        scenario = scenario or request.executable_id  # an unknown executable: its request ends DEAD anyway
        parts = [request.executable_id, scenario, *(f"{k}={v}" for k, v in sorted(request.parameters.items())),
                 *(f"{k}<-{v}" for k, v in sorted(request.input_artifacts.items()))]
        id = f"event-{content_id(*parts)}"
        configuration = Configuration(
            id=id, group=group, name=request.id, executable_id=request.executable_id, scenario_id=scenario,
            parameter_bindings=[ParameterBinding(key=k, value=v) for k, v in request.parameters.items()],
            input_artifact_bindings=[ArtifactBinding(key=k, artifact_id=v) for k, v in request.input_artifacts.items()],
        )
        await self.store.configurations.update(group, id, lambda current: None if current else configuration)
        return request.model_copy(update={"configuration_id": id, "scenario_id": scenario})

    async def _announce_created(self, group: str, deployment: Deployment) -> None:
        event = new_event(deployment.status_event(), source=SOURCE, subject=deployment.id,
                          id=f"{group}.{deployment.id}.{deployment.created_at.timestamp()}.UNKNOWN")
        await self.bus.publish(event, group)

    async def deleted_later(self, group: str, id: str, sequence: int) -> Deployment | None:
        """The deployment as it was when deleted, if the deleting event came after ``sequence``."""
        if sequence <= 0:
            return None
        key = Registry.key(group, id)
        # The common case, an id never seen, costs one read; the history (a consumer on the server)
        # is read only for a key whose last entry is a deletion (nats-py: KeyNotFoundError with it).
        try:
            await self.store.deployments.kv.get(key)
            return None  # a record is there: not deleted
        except KeyNotFoundError as missing:
            if getattr(missing, "entry", None) is None:
                return None
        try:
            entries = await self.store.deployments.kv.history(key)
        except NoKeysError:
            return None
        if not entries or entries[-1].operation is None:  # the last entry is a record: not deleted
            return None
        records = [entry.value for entry in entries if entry.operation is None and entry.value]
        if not records:
            return None
        last = Deployment.model_validate_json(records[-1])
        return last if last.sequence > sequence else None

    async def save_spec(self, group: str, request: DeploymentRequested, isvc: dict[str, Any]) -> Deployment:
        """Record what was asked for and what it rendered to (restarts re-apply it)."""

        def change(record: Deployment | None) -> Deployment:
            if record is None:
                raise DeploymentNotFound(f"deployment {request.id} in resource group {group} was deleted")
            return with_spec(record, request, isvc)

        saved = await self.store.deployments.update(group, request.id, change)
        assert saved is not None
        return saved

    async def announce(self, group: str, id: str, *, causation: str | None = None) -> None:
        """Publish the deployment's current status again (a retry finishing an interrupted change)."""
        await self._announce(group, await self.get(group, id), causation)

    async def _announce(self, group: str, deployment: Deployment, causation: str | None) -> None:
        status = deployment.status_event()
        # Same cause and same content: the same id, so a retried handler's repeat is dropped;
        # anything that differs (another status, new details) is a new event.
        event_id = f"{causation}.{content_id(status.model_dump_json())}" if causation else str(uuid.uuid4())
        event = new_event(status, source=SOURCE, subject=deployment.id, causationid=causation, id=event_id)
        await self.bus.publish(event, group)

    async def delete(self, group: str, id: str, *, causation: str | None = None) -> None:
        """Announce the deletion (targetStatus DELETED) and remove the record."""
        current = await self.get(group, id)
        event = new_event(current.status_event(target_status="DELETED"), source=SOURCE, subject=id,
                          causationid=causation, id=f"{causation}.{id}.DELETED" if causation else None)
        await self.bus.publish(event, group)
        await self.store.deployments.delete(group, id)
        metrics.forget_deployment(group, id)

    async def get(self, group: str, id: str) -> Deployment:
        deployment = await self.store.deployments.get(group, id)
        if deployment is None:
            raise DeploymentNotFound(f"no deployment {id} in resource group {group}")
        return deployment

    async def transition(
        self, group: str, id: str, status: Status | None, *, causation: str | None = None,
        applied: tuple[DeploymentRequested, dict[str, Any]] | None = None, **fields: Any
    ) -> Deployment:
        """Move a deployment to ``status`` (with ``fields`` such as reason, message, url, replicas).

        ``status=None`` keeps whatever status the deployment has when the change is written (new
        details only, e.g. a replica count). ``applied`` (a request and its InferenceService) is
        recorded in the same write, so that no reader sees the new spec with the old details. The
        event id is derived from the causing event and the content, so a retried handler announces
        each change once: JetStream drops the repeat.
        """

        def fold(record: Deployment | None) -> Deployment:
            if record is None:
                raise DeploymentNotFound(f"no deployment {id} in resource group {group}")
            target = record.status if status is None else status
            check_transition(record, target)
            if applied is not None:
                record = with_spec(record, *applied)
            return project(record, DeploymentStatus(id=id, status=target, **fields))

        # The record first; if we stop between the two steps, the retried handler announces again
        # under the same id (see announce), and JetStream keeps one.
        result = await self.store.deployments.update(group, id, fold)
        assert result is not None
        await self._announce(group, result, causation)
        log.info("deployment %s/%s is %s%s", group, id, result.status.value,
                 f" ({fields['reason']})" if fields.get("reason") else "", extra={"deployment": id})
        return result
