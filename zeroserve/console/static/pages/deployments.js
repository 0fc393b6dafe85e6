// #/deployments: the group's deployments, live. The group's event stream (GET /v2/events/stream) moves a
// row as its status event arrives; where this zeroserve has no such stream, the deployments still settling
// are each followed on their own stream (GET /v2/lm/deployments/{id}/events) and the list is read again
// every few seconds.

import { h, table, emptyState, errorBox, statusBadge, time, copyButton } from "../ui.js";

const STATUSES = ["UNKNOWN", "PENDING", "RUNNING", "STOPPING", "STOPPED", "DEAD"];
const SETTLING = new Set(["UNKNOWN", "PENDING", "STOPPING"]);
const POLL_MS = 3000;
const FOLLOWED_AT_MOST = 3; // a browser opens at most 6 connections to one HTTP/1.1 origin
const STATUS_TYPE = "io.zeroserve.deployment.status";

export function replicasText(deployment) {
  const scaling = deployment.details?.scaling?.backendDetails?.predictor || {};
  const running = scaling.runningReplicas ?? 0;
  const bounds = scaling.minReplicas !== undefined || scaling.maxReplicas !== undefined
    ? ` (${scaling.minReplicas ?? 0}–${scaling.maxReplicas ?? "?"})` : "";
  return `${running}${bounds}`;
}

export function planOf(deployment) {
  return deployment.details?.resources?.backendDetails?.predictor?.resourcePlan || "";
}

// A status event's data (camelCase, as the API writes it) applied to a deployment as the list shows it.
export function applyStatus(deployment, event) {
  deployment.status = event.status;
  if (event.deploymentUrl) deployment.deploymentUrl = event.deploymentUrl;
  deployment.statusDetails = event.reason ? { reason: event.reason, message: event.message } : deployment.statusDetails;
  const predictor = (((deployment.details ||= {}).scaling ||= {}).backendDetails ||= {}).predictor ||= {};
  if (event.runningReplicas !== undefined) predictor.runningReplicas = event.runningReplicas;
  if (event.minReplicas !== undefined) predictor.minReplicas = event.minReplicas;
  if (event.maxReplicas !== undefined) predictor.maxReplicas = event.maxReplicas;
}

// The data of a deployment.status event from a message of either stream: the group's (data: a CloudEvent)
// or a deployment's (event: the type, data: the CloudEvent's data).
export function statusOf(message) {
  const data = message.data;
  if (data && typeof data === "object" && data.type === STATUS_TYPE && data.data) return data.data;
  if (message.event === STATUS_TYPE && data && typeof data === "object") return data;
  return null;
}

function matches(deployment, filters) {
  if (filters.status && deployment.status !== filters.status) return false;
  if (filters.executable && deployment.executableId !== filters.executable) return false;
  const text = filters.text.trim().toLowerCase();
  if (!text) return true;
  return [deployment.id, deployment.configurationName, deployment.executableId, deployment.deploymentUrl, deployment.status]
    .some((value) => value && value.toLowerCase().includes(text));
}

export default {
  title: "Deployments",
  async render(root, ctx) {
    const { api, signal, group } = ctx;
    const filters = { status: ctx.query.get("status") || "", executable: ctx.query.get("executable") || "", text: ctx.query.get("q") || "" };
    let deployments = [];
    let failure = null;
    let lastText = null;
    const followed = new Map(); // id -> AbortController, in the fallback without a group stream
    let groupStream = false;

    const statusSelect = h("select", { id: "filter-status" }, h("option", { value: "" }, "Any status"),
      STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
    const executableSelect = h("select", { id: "filter-executable" }, h("option", { value: "" }, "Any executable"));
    const textInput = h("input", { id: "filter-text", type: "search", placeholder: "id, name or URL", value: filters.text });
    const listing = h("div", { id: "deployment-list", "aria-live": "polite", "aria-busy": "true" });
    const live = h("p", { class: "hint", id: "live-note" }, "Connecting…");

    root.append(
      h("div", { class: "page-head" }, h("h1", {}, "Deployments"), h("a", { class: "button primary", href: "#/deploy" }, "Deploy a model")),
      h("div", { class: "filters", role: "search", "aria-label": "Filter deployments" },
        h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
        h("div", { class: "field" }, h("label", { for: "filter-executable" }, "Executable"), executableSelect),
        h("div", { class: "field" }, h("label", { for: "filter-text" }, "Search"), textInput)),
      listing, live);

    const draw = () => {
      const executables = [...new Set(deployments.map((d) => d.executableId).filter(Boolean))].sort();
      const chosen = executableSelect.value || filters.executable;
      executableSelect.replaceChildren(h("option", { value: "" }, "Any executable"),
        executables.map((e) => h("option", { value: e, selected: e === chosen }, e)));
      const shown = deployments.filter((d) => matches(d, filters));
      listing.setAttribute("aria-busy", "false");
      if (failure) {
        listing.replaceChildren(errorBox(failure));
        return;
      }
      if (!deployments.length) {
        listing.replaceChildren(emptyState(`No deployments in group ${group} yet. Deploy one.`,
          h("a", { class: "button primary", href: "#/deploy" }, "Deploy a model")));
        return;
      }
      listing.replaceChildren(table({
        caption: `Deployments of resource group ${group}`,
        rows: shown,
        rowKey: (d) => d.id,
        empty: "No deployment matches these filters.",
        columns: [
          { label: "Deployment", value: (d) => h("a", { href: `#/deployments/${encodeURIComponent(d.id)}` }, d.id) },
          { label: "Name", value: (d) => d.configurationName || "" },
          { label: "Status", value: (d) => [statusBadge(d.status), d.statusDetails?.reason ? h("span", { class: "reason" }, d.statusDetails.reason) : null] },
          { label: "Executable", value: (d) => d.executableId || "" },
          { label: "Plan", value: (d) => planOf(d) },
          { label: "Replicas", className: "num", value: (d) => replicasText(d) },
          { label: "URL", className: "url", value: (d) => d.deploymentUrl ? [h("code", {}, d.deploymentUrl), " ", copyButton(d.deploymentUrl, `Copy the URL of ${d.id}`)] : "" },
          { label: "Created", value: (d) => time(d.createdAt) },
        ],
      }));
      if (!groupStream) followSettling();
    };

    const load = async () => {
      try {
        const answer = await api.get("/v2/lm/deployments", signal);
        const text = JSON.stringify(answer.resources || []);
        if (text === lastText && !failure) return; // unchanged: the table (and the focus in it) stays
        lastText = text;
        deployments = answer.resources || [];
        failure = null;
      } catch (error) {
        if (error.name === "AbortError") return;
        failure = error;
      }
      draw();
    };

    let reloading = null;
    const reloadSoon = () => {
      if (reloading) return;
      reloading = setTimeout(() => { reloading = null; load(); }, 300);
    };
    const onStatus = (event) => {
      const deployment = deployments.find((d) => d.id === event.id);
      if (deployment) {
        applyStatus(deployment, event);
        draw();
      }
      reloadSoon(); // times, new ids, a deletion: the list says them
    };

    function followSettling() {
      const wanted = deployments.filter((d) => SETTLING.has(d.status)).slice(0, FOLLOWED_AT_MOST).map((d) => d.id);
      for (const [id, controller] of followed) {
        if (!wanted.includes(id)) { controller.abort(); followed.delete(id); }
      }
      for (const id of wanted) {
        if (followed.has(id)) continue;
        const controller = new AbortController();
        signal.addEventListener("abort", () => controller.abort(), { once: true });
        followed.set(id, controller);
        api.stream(`/v2/lm/deployments/${encodeURIComponent(id)}/events`, (message) => {
          const status = statusOf(message);
          if (status) onStatus(status);
        }, controller.signal).catch(() => followed.delete(id));
      }
    }

    statusSelect.addEventListener("change", () => { filters.status = statusSelect.value; draw(); });
    executableSelect.addEventListener("change", () => { filters.executable = executableSelect.value; draw(); });
    textInput.addEventListener("input", () => { filters.text = textInput.value; draw(); });

    groupStream = true; // until the group's stream says it is not there
    await load();

    // The group's stream, if this zeroserve has one; otherwise poll, and follow the settling ones.
    live.textContent = "Live: following the group's events.";
    api.stream("/v2/events/stream?types=deployment.status", (message) => {
      const status = statusOf(message);
      if (status) onStatus(status);
    }, signal, reloadSoon).catch(() => {  // read again once open: a change made before then is in the list
      if (signal.aborted) return;
      groupStream = false;
      live.textContent = `Live: status changes as they happen; the list is read again every ${POLL_MS / 1000} s.`;
      followSettling();
      const timer = setInterval(load, POLL_MS);
      signal.addEventListener("abort", () => clearInterval(timer), { once: true });
    });
  },
};
