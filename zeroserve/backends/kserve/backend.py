"""The kserve backend: deployments as KServe InferenceServices on a Kubernetes cluster.

``apply`` creates the rendered InferenceService in the resource group's namespace, or replaces
its spec in place (the object, its name and so its URL stay; KServe rolls out a new revision and
the old one serves until it is ready), in either of KServe's modes (Knative or Standard; the same
status, conditions and address come back from both, so the watch reads them alike). ``stop``
sets ``serving.kserve.io/stop: "true"`` and waits for KServe's ``Stopped`` condition (KServe
honours it in both modes); ``delete`` deletes the object. Readiness arrives later,
through ``watch``: it lists and watches the InferenceServices zeroserve made and their predictor
pods, maps each object to a SAP status (``assess``), and reports a change only when that status
differs from the last one reported, so that a watch resumed after a disconnect (a fresh list,
then a new watch) neither loses nor repeats one. The same watch reads the pods' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from zeroserve.backends.base import Change
from zeroserve.backends.kserve.leader_election import micro_time
from zeroserve.deployments.logs import DeploymentLogs
from zeroserve.errors import InvalidConfiguration, ZeroserveError
from zeroserve.events import Status, content_id
from zeroserve.settings import Settings
from zeroserve.templates.modes import DEPLOYMENT_MODE_ANNOTATION, MODES, STANDARD
from zeroserve.templates.render import DEPLOYMENT_LABEL, GROUP_LABEL

# The official ``kubernetes`` client blocks: every call runs in a worker thread, and each watch has
# a thread of its own that hands what it sees to the event loop. Objects are plain dicts; zeroserve
# never deserialises them into the client's models, which misbehave with the kubernetes version
# that kserve's pins resolve to.
log = logging.getLogger(__name__)

API_GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
STOP_ANNOTATION = "serving.kserve.io/stop"
# KServe's label on the pods of an InferenceService, and the component they serve.
ISVC_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
# The containers of a predictor pod whose logs become deployment.log events.
LOG_CONTAINERS = ("storage-initializer", "kserve-container")
# Container states that keep a pod from ever serving until someone acts: shown as the PENDING reason.
STUCK = {
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}
# When zeroserve last applied the object: each request's outcome is reported, even an unchanged one.
APPLIED_ANNOTATION = "zeroserve.io/applied-at"
REQUEST_TIMEOUT_S = 30
WATCH_SECONDS = 300  # the server ends each watch after this; the next one resumes where it ended
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class KubernetesError(ZeroserveError):
    reason = "KubernetesError"


def api_client(settings: Settings) -> client.ApiClient:
    """A client for the cluster: the configured kubeconfig, else in-cluster, else ~/.kube/config."""
    if settings.kubeconfig is not None:
        return config.new_client_from_config(config_file=str(settings.kubeconfig))
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except ConfigException:
        try:
            return config.new_client_from_config()
        except (ConfigException, OSError) as error:
            raise KubernetesError(
                f"no Kubernetes cluster to use: not in a pod, and no kubeconfig ({error}); "
                "set ZEROSERVE_KUBECONFIG", reason="NoCluster",
            ) from None


def _failure(action: str, error: ApiException) -> KubernetesError:
    """An API error as a ZeroserveError whose message says what the server said."""
    detail = error.reason or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        detail = json.loads(error.body or "").get("message") or detail
    return KubernetesError(f"{action}: HTTP {error.status} {detail}".strip())


# --- what an InferenceService's status means ----------------------------------------------------


@dataclass(frozen=True)
class Assessment:
    """A deployment's status as read off its InferenceService and predictor pods."""

    status: Status
    reason: str | None = None
    message: str | None = None
    url: str | None = None
    running_replicas: int = 0
    # Something answers requests: ready pods, or the previous version while an update rolls out.
    serving: bool = False


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if isinstance(c, dict) and "type" in c}


def _ready_pod(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False  # terminating: it no longer takes traffic
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and _conditions(pod).get("Ready", {}).get("status") == "True"


def _stuck_reason(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why this pod cannot start, if Kubernetes says: unschedulable, or a container stuck."""
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return "Unschedulable", scheduled.get("message") or "no node fits the pod"
    status = pod.get("status") or {}
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK:
            return waiting["reason"], f"{container.get('name')}: {waiting.get('message') or waiting['reason']}"
    return None


def assess(isvc: dict[str, Any], pods: Iterable[dict[str, Any]] = ()) -> Assessment:
    """The SAP status of a deployment, from its InferenceService and its predictor's pods.

    Stopped (annotation and KServe's condition) -> STOPPED; an invalid spec or a model that failed
    to load -> DEAD, unless the previous version still serves (a failed update: RUNNING, with the
    failure as reason); Ready -> RUNNING with the URL; otherwise PENDING, with the reason a pod
    gives (``Unschedulable``, ``ImagePullBackOff``, ...) or the one the Ready condition gives.
    """
    pods = list(pods)
    running = sum(1 for pod in pods if _ready_pod(pod))
    metadata = isvc.get("metadata") or {}
    status = isvc.get("status") or {}
    conditions = _conditions(isvc)
    if (metadata.get("annotations") or {}).get(STOP_ANNOTATION) == "true":
        if conditions.get("Stopped", {}).get("status") == "True":
            return Assessment(Status.STOPPED, running_replicas=running)
        return Assessment(Status.STOPPING, running_replicas=running, serving=running > 0)

    # Inside the cluster the gateway reaches the service at its cluster-local address.
    url = (status.get("address") or {}).get("url") or status.get("url")
    ready = conditions.get("Ready", {})
    model = status.get("modelStatus") or {}
    states = model.get("states") or {}
    failure = model.get("lastFailureInfo") or {}
    previous_serves = states.get("activeModelState") == "Loaded"
    if model.get("transitionStatus") == "InvalidSpec":
        reason, message = failure.get("reason") or "InvalidSpec", failure.get("message") or "KServe refused the spec"
    elif "FailedToLoad" in (states.get("activeModelState"), states.get("targetModelState")) or model.get(
            "transitionStatus") == "BlockedByFailedLoad":
        reason, message = "ModelLoadFailed", failure.get("message") or "the model server could not load the model"
    else:
        reason = message = None
    if reason is not None:
        if previous_serves:
            return Assessment(Status.RUNNING, reason, f"the update failed, the previous version serves: {message}",
                              url=url, running_replicas=running, serving=True)
        return Assessment(Status.DEAD, reason, message, running_replicas=running)

    if ready.get("status") == "True":
        return Assessment(Status.RUNNING, url=url, running_replicas=running, serving=True)
    for pod in pods:
        stuck = _stuck_reason(pod)
        if stuck is not None:
            return Assessment(Status.PENDING, *stuck, running_replicas=running, serving=running > 0)
    if ready.get("reason"):
        return Assessment(Status.PENDING, ready["reason"], ready.get("message"), running_replicas=running,
                          serving=running > 0 or previous_serves)
    return Assessment(Status.PENDING, running_replicas=running, serving=running > 0 or previous_serves)


# --- the backend --------------------------------------------------------------------------------


Key = tuple[str, str]  # (namespace, name)


class _Run:
    """One ``watch()``: its threads stop when it ends, whatever happens to the backend."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.watches: list[watch.Watch] = []
        self.lock = threading.Lock()

    def end(self) -> None:
        self.stop.set()
        with self.lock:
            watches = list(self.watches)
        for w in watches:
            w.stop()  # shuts the socket: the watch thread's read returns at once


class KserveBackend:
    activator = None  # requests go to the InferenceService's URL: Knative's activator holds them there

    def __init__(self, settings: Settings, logs: DeploymentLogs, api: client.ApiClient | None = None) -> None:
        self.settings = settings
        self.logs = logs
        self.api = api or api_client(settings)
        self.objects = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self._closed = False
        self._runs: set[_Run] = set()

    # -- writing ----------------------------------------------------------------------------------

    async def apply(self, isvc: dict[str, Any]) -> bool:
        await asyncio.to_thread(self._apply, isvc)
        return False  # ready when KServe says so: watch() reports RUNNING

    def _apply(self, isvc: dict[str, Any]) -> None:
        namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        # When it was (last) asked for: the watch reports the outcome of each request anew, even
        # when nothing else changed (a deployment requested again after it died).
        annotations = {**isvc["metadata"].get("annotations", {}), APPLIED_ANNOTATION: micro_time(datetime.now(UTC))}
        current = self._get(namespace, name)
        if current is None:
            body = {**isvc, "metadata": {**isvc["metadata"], "annotations": annotations}}
            try:
                self.objects.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, body,
                                                             _request_timeout=REQUEST_TIMEOUT_S)
                log.info("created InferenceService %s/%s", namespace, name)
                return
            except ApiException as error:
                if error.status != 409:  # 409: created meanwhile (a retried handler): patch it below
                    raise _failure(f"cannot create InferenceService {namespace}/{name}", error) from None
            current = self._get(namespace, name) or {}
        if (current.get("metadata") or {}).get("deletionTimestamp"):
            raise KubernetesError(f"InferenceService {namespace}/{name} is being deleted; trying again later",
                                  reason="Terminating")
        _check_same_mode(current, isvc)
        # In place: the spec is replaced as a whole (a JSON patch, so that what the new version no
        # longer has goes too); labels and annotations are merged, and a stopped one starts again.
        patch = [
            {"op": "replace", "path": "/spec", "value": isvc["spec"]},
            *({"op": "add", "path": f"/metadata/labels/{_pointer(k)}", "value": v}
              for k, v in isvc["metadata"].get("labels", {}).items()),
            *({"op": "add", "path": f"/metadata/annotations/{_pointer(k)}", "value": v}
              for k, v in {**annotations, STOP_ANNOTATION: "false"}.items()),
        ]
        for field in ("labels", "annotations"):  # a JSON patch cannot add into a map that is missing
            if not (current.get("metadata") or {}).get(field):
                patch.insert(0, {"op": "add", "path": f"/metadata/{field}", "value": {}})
        try:
            # The client would send a list as a merge patch, which the API server refuses: say what it is.
            self.objects.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, patch,
                _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as error:
            raise _failure(f"cannot update InferenceService {namespace}/{name}", error) from None
        log.info("updated InferenceService %s/%s in place", namespace, name)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(  # type: ignore[assignment]
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT_S)
            return found
        except ApiException as error:
            if error.status == 404:
                return None
            raise _failure(f"cannot read InferenceService {namespace}/{name}", error) from None

    async def stop(self, group: str, id: str) -> None:
        """Annotate it stopped, then wait (up to ``kserve_stop_timeout_s``) for KServe's Stopped."""
        if not await asyncio.to_thread(self._annotate_stopped, group, id):
            return  # nothing there: nothing runs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.kserve_stop_timeout_s
        while not self._closed:
            found = await asyncio.to_thread(self._get, group, id)
            if found is None or assess(found).status == Status.STOPPED:
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
        await self.logs.control(group, id, (
            f"KServe has not confirmed the stop within {self.settings.kserve_stop_timeout_s:g}s; "
            "the InferenceService is annotated serving.kserve.io/stop and its pods go when KServe acts"))

    def _annotate_stopped(self, namespace: str, name: str) -> bool:
        body = {"metadata": {"annotations": {STOP_ANNOTATION: "true"}}}
        try:
            self.objects.patch_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name, body,
                                                        _request_timeout=REQUEST_TIMEOUT_S)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise _failure(f"cannot stop InferenceService {namespace}/{name}", error) from None

    async def delete(self, group: str, id: str) -> None:
        await asyncio.to_thread(self._delete, group, id)

    def _delete(self, namespace: str, name: str) -> None:
        try:
            self.objects.delete_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name,
                                                         _request_timeout=REQUEST_TIMEOUT_S)
            log.info("deleted InferenceService %s/%s", namespace, name)
        except ApiException as error:
            if error.status != 404:  # gone already: deleted
                raise _failure(f"cannot delete InferenceService {namespace}/{name}", error) from None

    async def close(self) -> None:
        self._closed = True
        for run in list(self._runs):
            run.end()

    # -- watching ---------------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator[Change]:
        """Status changes of zeroserve's InferenceServices, each reported once per change."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()

        def deliver(kind: str, what: str, payload: Any) -> None:  # from a watch thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                loop.call_soon_threadsafe(inbox.put_nowait, (kind, what, payload))

        namespaces: list[str | None] = list(self.settings.kserve_namespaces) or [None]
        run = _Run()
        self._runs.add(run)
        for kind in ("isvc", "pod"):
            for namespace in namespaces:
                threading.Thread(target=self._watch_loop, args=(kind, namespace, deliver, run), daemon=True,
                                 name=f"kserve-watch-{kind}-{namespace or 'all'}").start()
        state = _WatchState(self.settings, namespaces)
        logs = asyncio.create_task(self._follow_logs(state), name="kserve-logs")
        checked = loop.time()
        try:
            while True:
                try:
                    # Not asyncio.wait_for: on Python 3.11 it can swallow the cancellation that ends this.
                    async with asyncio.timeout(1.0):
                        kind, what, payload = await inbox.get()
                    touched = state.take(kind, what, payload)
                except TimeoutError:
                    touched = set()
                if loop.time() - checked >= 1.0:  # pending deadlines pass whether or not events come
                    touched |= state.pending_keys()
                    checked = loop.time()
                for change in state.changes(touched):
                    yield change
        finally:
            run.end()
            self._runs.discard(run)
            logs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await logs

    def _watch_loop(self, kind: str, namespace: str | None, deliver: Callable[[str, str, Any], None],
                    run: _Run) -> None:
        """List, then watch from the list's version; after any break, list again (the list says
        what changed meanwhile, and the watcher reports only what differs from what it reported)."""
        failures = 0
        where = namespace or "all namespaces"
        while not run.stop.is_set():
            try:
                listed = self._list(kind, namespace)
                deliver(kind, "sync", (namespace, listed.get("items") or []))
                failures = 0
                version = (listed.get("metadata") or {}).get("resourceVersion")
                while not run.stop.is_set():
                    version = self._stream(kind, namespace, version, deliver, run)
                    if version is None:
                        break  # nothing to resume from: list again
            except ApiException as error:
                log.warning("cannot watch %s in %s: HTTP %s %s", kind, where, error.status, error.reason)
            except Exception as error:  # a dropped connection, a server that went away: retry
                if run.stop.is_set():
                    return
                log.info("watch of %s in %s broke off (%s); resuming", kind, where, type(error).__name__)
            failures += 1
            run.stop.wait(RETRY_S[min(failures, len(RETRY_S)) - 1])

    def _list_call(self, kind: str, namespace: str | None) -> tuple[Callable[..., Any], list[Any], dict[str, Any]]:
        if kind == "isvc":
            selector = {"label_selector": DEPLOYMENT_LABEL}
            if namespace is None:
                return self.objects.list_cluster_custom_object, [API_GROUP, API_VERSION, PLURAL], selector
            return self.objects.list_namespaced_custom_object, [API_GROUP, API_VERSION, namespace, PLURAL], selector
        selector = {"label_selector": ISVC_LABEL}
        if namespace is None:
            return self.core.list_pod_for_all_namespaces, [], selector
        return self.core.list_namespaced_pod, [namespace], selector

    def _list(self, kind: str, namespace: str | None) -> dict[str, Any]:
        call, args, kwargs = self._list_call(kind, namespace)
        response = call(*args, **kwargs, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S)
        try:
            return json.loads(response.data)  # type: ignore[no-any-return]
        finally:
            response.release_conn()

    def _stream(self, kind: str, namespace: str | None, version: str | None,
                deliver: Callable[[str, str, Any], None], run: _Run) -> str | None:
        """One watch request, to its end; returns the version to resume from (None: list again)."""
        call, args, kwargs = self._list_call(kind, namespace)
        w = watch.Watch()
        with run.lock:
            run.watches.append(w)
        if version and version.isdigit():
            kwargs["resource_version"] = version
        try:
            if run.stop.is_set():
                return None
            for event in w.stream(call, *args, **kwargs, timeout_seconds=WATCH_SECONDS, deserialize=False,
                                  allow_watch_bookmarks=True, _request_timeout=(10, WATCH_SECONDS + 30)):
                if run.stop.is_set():
                    return None
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    return None
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") != "BOOKMARK":
                    deliver(kind, event["type"], obj)
        except KeyError:
            # 410 Gone (the version is too old to resume from): the client, told not to deserialise,
            # trips over the ERROR event before handing it on. List again.
            return None
        except ApiException as error:
            if error.status == 410:
                return None
            raise
        finally:
            with run.lock:
                run.watches.remove(w)
        return version if version and version.isdigit() else None

    # -- logs -------------------------------------------------------------------------------------

    async def _follow_logs(self, state: _WatchState) -> None:
        """Every few seconds, the new lines of each predictor pod's model and storage containers."""
        read_up_to: dict[tuple[str, str, str], str] = {}  # (namespace, pod, container) -> last timestamp
        recent_s = int(self.settings.kserve_log_poll_s * 3) + 10  # what a poll reads after the first
        while True:
            for (namespace, pod_name), pod in list(state.pods.items()):
                owner = state.owner(namespace, pod)
                if owner is None:
                    continue
                spec = pod.get("spec") or {}
                containers = {c.get("name") for c in [*(spec.get("initContainers") or []),
                                                      *(spec.get("containers") or [])]}
                for container in LOG_CONTAINERS:
                    if container not in containers:
                        continue
                    key = (namespace, pod_name, container)
                    try:
                        text = await asyncio.to_thread(
                            self._read_log, namespace, pod_name, container, None if key not in read_up_to else recent_s)
                    except ApiException:
                        continue  # not started yet, or gone: the next round tries again
                    except Exception as error:  # the API server unreachable: so is everything, retry
                        log.debug("logs of %s/%s %s: %s", namespace, pod_name, container, error)
                        continue
                    read_up_to.setdefault(key, "")
                    for stamp, line in _new_lines(text, read_up_to[key]):
                        read_up_to[key] = stamp
                        # The same line read again (after a watcher restart) has the same id: JetStream drops it.
                        digest = content_id(line, length=12)
                        await self.logs.write(*owner, f"{pod_name}/{container}", "stdout", line, _parse_time(stamp),
                                              event_id=f"log.{namespace}.{pod_name}.{container}.{stamp}.{digest}")
            for key in [k for k in read_up_to if (k[0], k[1]) not in state.pods]:
                del read_up_to[key]
            await asyncio.sleep(self.settings.kserve_log_poll_s)

    def _read_log(self, namespace: str, pod: str, container: str, since_s: int | None) -> str:
        """A container's log with timestamps: all of it (up to 1000 lines) the first time, then the
        last ``since_s`` seconds."""
        response: Any = self.core.read_namespaced_pod_log(
            pod, namespace, container=container, timestamps=True,
            tail_lines=1000 if since_s is None else None, since_seconds=since_s,
            _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S,
        )
        try:
            return response.data.decode("utf-8", "replace")  # type: ignore[no-any-return]
        finally:
            response.release_conn()


def _check_same_mode(current: dict[str, Any], isvc: dict[str, Any]) -> None:
    """KServe's webhook refuses to change an InferenceService's deployment mode in place: say so first."""
    def mode(obj: dict[str, Any]) -> str:
        given = ((obj.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)
        return MODES.get(given, STANDARD) if isinstance(given, str) else STANDARD  # KServe's own default
    was, wanted = mode(current), mode(isvc)
    if was != wanted:
        namespace, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        raise InvalidConfiguration(
            f"InferenceService {namespace}/{name} runs in {was} mode, and KServe cannot change that in place: "
            f"stop and delete the deployment, then deploy it in {wanted} mode", reason="DeploymentModeChanged")


def _pointer(key: str) -> str:
    """A map key as one JSON-pointer segment (RFC 6901): ``/`` and ``~`` escaped."""
    return key.replace("~", "~0").replace("/", "~1")



def _new_lines(text: str, after: str) -> list[tuple[str, str]]:
    """(timestamp, line) pairs of a ``timestamps=true`` log newer than ``after``."""
    lines = []
    for raw in text.splitlines():
        stamp, _, line = raw.partition(" ")
        if not stamp or stamp <= after:
            continue  # RFC 3339 with fixed nanoseconds: as strings they sort as times do
        lines.append((stamp, line))
    return lines


def _parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 time as Kubernetes writes it (with nanoseconds, or none); None if unreadable."""
    if not stamp:
        return None
    try:  # Python keeps microseconds
        head, _, fraction = stamp.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class _Seen:
    """What the watch last reported for one InferenceService, whose it is, and since when it waits."""

    owner: tuple[str, str]
    reported: tuple[Any, ...] | None = None
    pending_since: datetime | None = None


class _WatchState:
    """What the watch knows: the InferenceServices and pods it has seen, and what it reported."""

    def __init__(self, settings: Settings, namespaces: list[str | None]) -> None:
        self.settings = settings
        self.namespaces = namespaces
        # The lists that have arrived. An InferenceService is reported once its namespace's
        # InferenceServices and pods are both listed (listed before its pods, it would show a
        # moment without its reason); a namespace that cannot be listed holds up only itself.
        self.listed: set[tuple[str, str | None]] = set()
        self.isvcs: dict[Key, dict[str, Any]] = {}
        self.pods: dict[Key, dict[str, Any]] = {}
        self.seen: dict[Key, _Seen] = {}
        self.vanished: list[Change] = []

    def take(self, kind: str, what: str, payload: Any) -> set[Key]:
        """Fold one list or watch event in; returns the InferenceServices it may have changed."""
        store = self.isvcs if kind == "isvc" else self.pods
        if what == "sync":  # a fresh list replaces what was known of that namespace (or of all)
            namespace, items = payload
            fresh = {_key(obj): obj for obj in items}
            touched = {key for key in store if namespace is None or key[0] == namespace} | set(fresh)
            self.listed.add((kind, namespace))
        else:
            key = _key(payload)
            fresh = {} if what == "DELETED" else {key: payload}
            touched = {key}
        # A pod counts for the InferenceService it served before the event and the one after.
        owners = {self._isvc_of(key) for key in touched} if kind == "pod" else set()
        for key in touched - set(fresh):
            store.pop(key, None)
        store.update(fresh)
        if kind == "pod":
            owners |= {self._isvc_of(key) for key in touched}
            touched = {key for key in owners if key is not None}
        else:
            for key in touched - set(self.isvcs):
                self._vanish(key)
        if what == "sync":  # a namespace listed at last: everything in it has news
            touched |= {key for key in self.isvcs if payload[0] is None or key[0] == payload[0]}
        return touched & set(self.isvcs)

    def _vanish(self, key: Key) -> None:
        """Gone from the cluster. If zeroserve deleted it, the deployment is no longer PENDING or
        RUNNING and nothing comes of this; if someone else did, it is DEAD, and says why."""
        seen = self.seen.pop(key, None)
        if seen is not None and seen.reported is not None:
            self.vanished.append(Change(*seen.owner, running_replicas=0, status=Status.DEAD,
                                        reason="InferenceServiceDeleted",
                                        message=f"InferenceService {key[0]}/{key[1]} was deleted outside zeroserve"))

    def _isvc_of(self, pod_key: Key) -> Key | None:
        pod = self.pods.get(pod_key)
        name = ((pod or {}).get("metadata") or {}).get("labels", {}).get(ISVC_LABEL)
        return (pod_key[0], name) if name else None

    def _is_listed(self, namespace: str) -> bool:
        return all((kind, namespace) in self.listed or (kind, None) in self.listed for kind in ("isvc", "pod"))

    def owner(self, namespace: str, pod: dict[str, Any]) -> tuple[str, str] | None:
        """The (group, deployment id) a pod serves, through its InferenceService."""
        name = ((pod.get("metadata") or {}).get("labels") or {}).get(ISVC_LABEL)
        isvc = self.isvcs.get((namespace, name)) if name else None
        return _owner(isvc) if isvc is not None else None

    def pending_keys(self) -> set[Key]:
        return {key for key, seen in self.seen.items() if seen.pending_since is not None}

    def changes(self, keys: Iterable[Key]) -> list[Change]:
        found, self.vanished = self.vanished, []
        for key in sorted(keys):
            isvc = self.isvcs.get(key)
            owner = _owner(isvc) if isvc is not None else None
            if isvc is None or owner is None or not self._is_listed(key[0]):
                continue
            pods = [pod for pod_key, pod in self.pods.items()
                    if pod_key[0] == key[0] and _is_predictor(pod, key[1])]
            seen = self.seen.setdefault(key, _Seen(owner))
            now = self._with_deadline(isvc, seen, assess(isvc, pods))
            applied = ((isvc.get("metadata") or {}).get("annotations") or {}).get(APPLIED_ANNOTATION)
            reported = (applied, now.status, now.reason, now.running_replicas, now.url)
            if seen.reported == reported:
                continue
            seen.reported = reported
            found.append(Change(
                owner[0], owner[1], running_replicas=now.running_replicas, status=now.status,
                reason=now.reason, message=now.message, backend_url=now.url,
            ))
        return found

    def _with_deadline(self, isvc: dict[str, Any], seen: _Seen, found: Assessment) -> Assessment:
        """PENDING with nothing serving for longer than the deadline is DEAD, with the reason it was
        pending for. The clock starts when KServe marked it not ready or when it was last applied,
        whichever is later, so a restarted watcher does not start it again."""
        if found.status != Status.PENDING or found.serving:
            seen.pending_since = None
            return found
        now = datetime.now(UTC)
        if seen.pending_since is None:
            ready = _conditions(isvc).get("Ready", {})
            applied = ((isvc.get("metadata") or {}).get("annotations") or {}).get(APPLIED_ANNOTATION)
            marks = [t for t in (_parse_time(ready.get("lastTransitionTime") if ready.get("status") == "False"
                                             else None), _parse_time(applied)) if t is not None]
            seen.pending_since = min(max(marks), now) if marks else now
        waited = now - seen.pending_since
        if waited.total_seconds() < self.settings.kserve_pending_deadline_s:
            return found
        why = f"{found.reason}: {found.message}" if found.reason else "not ready"
        return Assessment(
            Status.DEAD, found.reason or "PendingTooLong",
            f"still pending after {timedelta(seconds=round(waited.total_seconds()))} ({why})",
            running_replicas=found.running_replicas,
        )


def _key(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace") or "", metadata.get("name") or ""


def _owner(isvc: dict[str, Any]) -> tuple[str, str] | None:
    """The (group, deployment id) of one of zeroserve's InferenceServices; None for any other.

    Only an object where zeroserve puts it counts (namespace = group, name = deployment id): a
    label alone could make someone else's InferenceService pass for another group's deployment.
    """
    labels = (isvc.get("metadata") or {}).get("labels") or {}
    namespace, name = _key(isvc)
    if labels.get(DEPLOYMENT_LABEL) != name or labels.get(GROUP_LABEL, namespace) != namespace:
        return None
    return namespace, name


def _is_predictor(pod: dict[str, Any], isvc_name: str) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(ISVC_LABEL) == isvc_name and labels.get(COMPONENT_LABEL, "predictor") == "predictor"
