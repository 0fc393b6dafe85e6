// #/deployments/:id: one deployment. Its status and log follow its event stream (GET .../events); its
// history is a timeline of the record's times, the control plane's notes and the status events seen here;
// its cold starts (GET .../coldStarts, or where a zeroserve has no such route the log's "cold start of"
// notes) are a stacked bar of their phases; its request rate and latency (GET .../traffic) two lines.

import { h, emptyState, errorBox, statusBadge, time, copyButton, confirmDialog, announce, field, fieldError } from "../ui.js";
import { barChart, lineChart } from "../charts.js";
import { applyStatus, planOf, replicasText, statusOf } from "./deployments.js";

const PHASES = ["queued", "replica-start", "model-load", "ready", "forward"];
const LOG_TYPE = "io.zeroserve.deployment.log";
const TRAFFIC_EVERY_MS = 10000;
const OPENAI = { huggingface: "chat/completions", "huggingface-embeddings": "embeddings" };
// "cold start of iris-1 took 1234 ms: queued 0 ms, replica-start 12 ms, ..." (serving/activator.py)
const COLD_START_NOTE = /^cold start of (\S+) took (\d+) ms: (.*)$/;
const REPLICA_NOTE = /^(\S+) (starting on (\S+)|ready$|exited with code (-?\d+)|idle for [\d.]+ s: stopping|failed to start)/;

function missingRoute(error) {
  return error && (error.status === 404 || error.status === 405) && !/deployment/i.test(error.code || "");
}

function callOf(deployment, group) {
  const url = deployment.deploymentUrl || `${location.origin}/v2/inference/deployments/${deployment.id}`;
  const openai = OPENAI[deployment.executableId];
  if (openai) {
    const body = openai === "embeddings" ? { model: deployment.id, input: "Hello" }
      : { model: deployment.id, messages: [{ role: "user", content: "Hello" }], max_tokens: 32 };
    return { url: `${url}/openai/v1/${openai}`, body, base: url };
  }
  return { url: `${url}/v1/models/${deployment.id}:predict`, body: { instances: [[6.8, 2.8, 4.8, 1.4]] }, base: url, v1: true, group };
}

function curlOf(call, group, bodyText) {
  return [
    "TOKEN=$(zeroserve token)",
    `curl -s -X POST ${call.url} \\`,
    '     -H "Authorization: Bearer $TOKEN" \\',
    `     -H "AI-Resource-Group: ${group}" -H 'Content-Type: application/json' \\`,
    `     -d '${bodyText.replace(/'/g, "'\\''")}'`,
  ].join("\n");
}

function pythonOf(call, deployment, group, bodyText) {
  let body;
  try { body = JSON.stringify(JSON.parse(bodyText)); } catch { body = bodyText; }
  if (call.v1) {
    const gateway = new URL(call.base).origin;
    return [
      "import os", "from zeroserve import Client", "",
      `zs = Client("${gateway}", token=os.environ["TOKEN"], group="${group}")`,
      `print(zs.predict("${deployment.id}", ${body}))`,
    ].join("\n");
  }
  return [
    "import os", "import httpx", "",
    `answer = httpx.post("${call.url}",`,
    `                    headers={"Authorization": f"Bearer {os.environ['TOKEN']}", "AI-Resource-Group": "${group}"},`,
    `                    json=${body}, timeout=60)`,
    "print(answer.json())",
  ].join("\n");
}

// Cold starts from the log's notes, newest first, in the shape of GET .../coldStarts.
export function coldStartsFromLogs(lines) {
  const found = [];
  for (const line of lines) {
    const match = COLD_START_NOTE.exec(line.msg || "");
    if (!match) continue;
    const phases = {};
    for (const part of match[3].split(",")) {
      const [name, ms] = part.trim().split(/\s+/);
      if (name) phases[name] = Number(ms);
    }
    found.push({ replica: match[1], startedAt: line.timestamp, totalMs: Number(match[2]), phases });
  }
  return found.reverse();
}

function replicasFromLogs(lines) {
  const replicas = new Map();
  for (const line of lines) {
    if (line.source !== "control-plane") continue;
    const match = REPLICA_NOTE.exec(line.msg || "");
    if (!match) continue;
    const replica = replicas.get(match[1]) || { name: match[1], state: "", since: line.timestamp, address: "" };
    if (match[3]) { replica.state = "starting"; replica.address = match[3]; replica.since = line.timestamp; }
    else if (match[2] === "ready") replica.state = "ready";
    else if (match[4] !== undefined) replica.state = `exited (${match[4]})`;
    else if (match[2].startsWith("idle")) replica.state = "stopped (idle)";
    else replica.state = "failed to start";
    replica.last = line.timestamp;
    replicas.set(match[1], replica);
  }
  return [...replicas.values()].reverse();
}

function codeBlock(text, label) {
  return h("div", { class: "code-block" }, h("pre", { tabindex: "0", "aria-label": label }, h("code", {}, text)), copyButton(text, `Copy ${label}`));
}

export default {
  title: "Deployment",
  async render(root, ctx) {
    const { api, signal, params, group, navigate } = ctx;
    const id = params.id;
    const base = `/v2/lm/deployments/${encodeURIComponent(id)}`;
    let deployment = await api.get(base, signal);
    const logs = [];
    const liveStatuses = [];
    let coldStartsRoute = true;

    const heading = h("h1", {}, `Deployment ${id} `);
    const badge = h("span", { id: "deployment-status" });
    const summary = h("dl", { class: "summary" });
    const actions = h("div", { class: "actions", id: "deployment-actions" });
    const notice = h("div", { id: "deployment-notice" });
    const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Status history" });
    const replicas = h("div", { id: "replicas" });
    const logList = h("ol", { class: "log", id: "log", role: "log", "aria-label": `Log of ${id}`, tabindex: "0" });
    const follow = h("input", { type: "checkbox", id: "follow-log", checked: true });
    const coldChart = h("div", { class: "chart", id: "cold-start-chart" });
    const coldTable = h("div", { id: "cold-start-table" });
    const trafficRequests = h("div", { class: "chart", id: "traffic-requests" });
    const trafficLatency = h("div", { class: "chart", id: "traffic-latency" });
    const trafficNote = h("div", { id: "traffic-note" });

    root.append(
      h("p", {}, h("a", { href: "#/deployments" }, "← Deployments")),
      h("div", { class: "page-head" }, heading, actions),
      notice, summary,
      h("div", { class: "columns" },
        h("section", { class: "panel", "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "Status history"), timeline),
        h("section", { class: "panel", "aria-labelledby": "replicas-title" }, h("h2", { id: "replicas-title" }, "Replicas"), replicas)),
      callSection(),
      h("section", { "aria-labelledby": "log-title" },
        h("div", { class: "page-head" }, h("h2", { id: "log-title" }, "Log"),
          h("label", {}, follow, " Follow the log")),
        logList),
      h("div", { class: "columns" },
        h("section", { class: "panel", "aria-labelledby": "cold-title" }, h("h2", { id: "cold-title" }, "Cold starts"),
          h("p", { class: "hint" }, "Where each replica's start from zero went, phase by phase (ms)."), coldChart, coldTable),
        h("section", { class: "panel", "aria-labelledby": "traffic-title" }, h("h2", { id: "traffic-title" }, "Requests, last 15 minutes"),
          trafficNote, trafficRequests, trafficLatency)),
      updateSection());
    heading.append(badge);

    function drawHeader() {
      badge.replaceChildren(statusBadge(deployment.status));
      const details = deployment.statusDetails;
      notice.replaceChildren(details?.reason ? h("div", { class: deployment.status === "DEAD" ? "error" : "notice", role: "status" },
        h("strong", {}, `${details.reason}: `), details.message || deployment.statusMessage || "") : "");
      const item = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value || h("span", { class: "muted" }, "—")));
      summary.replaceChildren(
        item("Name", deployment.configurationName),
        item("Executable", deployment.executableId),
        item("Resource plan", planOf(deployment)),
        item("Replicas (min–max)", h("span", { id: "replica-count" }, replicasText(deployment))),
        item("URL", deployment.deploymentUrl ? [h("code", {}, deployment.deploymentUrl), " ", copyButton(deployment.deploymentUrl, "Copy the URL")] : null),
        item("Configuration", deployment.configurationId ? h("code", {}, deployment.configurationId) : null),
        item("Created", time(deployment.createdAt)),
        item("Started", time(deployment.startTime)));
      drawActions();
    }

    function drawActions() {
      const buttons = [];
      if (["PENDING", "RUNNING"].includes(deployment.status)) {
        const stop = h("button", { type: "button", class: "button", id: "stop" }, "Stop");
        stop.addEventListener("click", async () => {
          if (!await confirmDialog(`Stop deployment ${id}? Its replicas are released; it can be deleted afterwards.`, { confirm: "Stop" })) return;
          await act(() => api.send("PATCH", base, { targetStatus: "STOPPED" }), `Stopping ${id}`);
        });
        buttons.push(stop);
      }
      if (["UNKNOWN", "STOPPED", "DEAD"].includes(deployment.status)) {
        const remove = h("button", { type: "button", class: "button danger", id: "delete" }, "Delete");
        remove.addEventListener("click", async () => {
          if (!await confirmDialog(`Delete deployment ${id}? This cannot be undone.`, { confirm: "Delete" })) return;
          if (await act(() => api.send("DELETE", base), `Deleting ${id}`)) navigate("#/deployments");
        });
        buttons.push(remove);
      }
      actions.replaceChildren(...buttons);
    }

    async function act(call, what) {
      try {
        await call();
        announce(what);
        return true;
      } catch (error) {
        notice.replaceChildren(errorBox(error));
        return false;
      }
    }

    function drawTimeline() {
      const entries = [];
      const add = (at, label, kind) => { if (at) entries.push({ at: new Date(at), label, kind }); };
      add(deployment.createdAt, "Requested (UNKNOWN)", "status");
      add(deployment.submissionTime, "PENDING: applying", "status");
      add(deployment.startTime, "RUNNING", "status");
      if (["STOPPED", "DEAD", "COMPLETED"].includes(deployment.status)) add(deployment.completionTime || deployment.modifiedAt, deployment.status, "status");
      for (const line of logs) {
        if (line.source === "control-plane" && !COLD_START_NOTE.test(line.msg)) add(line.timestamp, line.msg, "note");
      }
      for (const seen of liveStatuses) add(seen.at, seen.label, "status");
      entries.sort((a, b) => a.at - b.at);
      timeline.replaceChildren(...entries.map((entry) => h("li", { class: entry.kind === "status" ? "status-event" : "note" },
        time(entry.at.toISOString()), entry.label)));
      timeline.scrollTop = timeline.scrollHeight;
    }

    function drawReplicas() {
      const known = replicasFromLogs(logs);
      const count = h("p", {}, `${deployment.details?.scaling?.backendDetails?.predictor?.runningReplicas ?? 0} running now`,
        h("span", { class: "muted" }, ` (min ${deployment.details?.scaling?.backendDetails?.predictor?.minReplicas ?? 0}, max ${deployment.details?.scaling?.backendDetails?.predictor?.maxReplicas ?? "?"})`));
      if (!known.length) {
        replicas.replaceChildren(count, emptyState("No replica has started yet: the first request starts one."));
        return;
      }
      replicas.replaceChildren(count, h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Replica", "State", "Address", "Since"].map((label) => h("th", { scope: "col" }, label)))),
        h("tbody", {}, known.map((r) => h("tr", {}, h("td", {}, r.name), h("td", {}, r.state), h("td", {}, h("code", {}, r.address)), h("td", {}, time(r.since))))))));
    }

    function logLine(line) {
      const stream = line.stream === "stderr" ? "stderr" : "";
      return h("li", { class: stream }, h("span", { class: "source" }, `${new Date(line.timestamp).toLocaleTimeString()} ${line.source || ""} `), line.msg);
    }

    function appendLog(line) {
      logs.push(line);
      logList.append(logLine(line));
      if (follow.checked) logList.scrollTop = logList.scrollHeight;
    }

    async function drawColdStarts() {
      let starts = null;
      if (coldStartsRoute) {
        try {
          starts = (await api.get(`${base}/coldStarts`, signal)).resources || [];
        } catch (error) {
          if (!missingRoute(error)) { coldTable.replaceChildren(errorBox(error)); return; }
          coldStartsRoute = false;
        }
      }
      if (!coldStartsRoute) starts = coldStartsFromLogs(logs);
      if (!starts.length) {
        coldChart.replaceChildren();
        coldChart.hidden = true;
        coldTable.replaceChildren(emptyState("No cold start yet: call the deployment while it has no replica to see one."));
        return;
      }
      coldChart.hidden = false;
      const shown = starts.slice(0, 12).reverse(); // oldest left
      const labels = shown.map((s) => `${s.replica} ${new Date(s.startedAt).toLocaleTimeString()}`);
      barChart(coldChart, {
        labels, stacked: true, yLabel: "ms",
        series: PHASES.map((phase) => ({ label: phase, data: shown.map((s) => Math.round(s.phases?.[phase] ?? 0)) })),
        summary: `Stacked bar chart of ${shown.length} cold starts by phase; the latest took ${Math.round(starts[0].totalMs)} ms`,
      });
      coldTable.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "cold-starts" },
        h("caption", { class: "visually-hidden" }, "Cold starts, newest first, in milliseconds"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Replica"), h("th", { scope: "col" }, "When"),
          PHASES.map((p) => h("th", { scope: "col", class: "num" }, p)), h("th", { scope: "col", class: "num" }, "total"))),
        h("tbody", {}, starts.slice(0, 10).map((s) => h("tr", {}, h("td", {}, s.replica), h("td", {}, time(s.startedAt)),
          PHASES.map((p) => h("td", { class: "num" }, String(Math.round(s.phases?.[p] ?? 0)))), h("td", { class: "num" }, String(Math.round(s.totalMs)))))))));
    }

    async function drawTraffic() {
      let traffic;
      try {
        traffic = await api.get(`${base}/traffic?minutes=15`, signal);
      } catch (error) {
        if (error.name === "AbortError") return;
        trafficRequests.hidden = trafficLatency.hidden = true;
        trafficNote.replaceChildren(missingRoute(error)
          ? emptyState("This zeroserve does not record request rate and latency per deployment yet.")
          : errorBox(error));
        return false;
      }
      const points = traffic.points || [];
      if (!points.some((p) => p.requests)) {
        trafficRequests.hidden = trafficLatency.hidden = true;
        trafficNote.replaceChildren(emptyState("No requests in the last 15 minutes."));
        return true;
      }
      trafficNote.replaceChildren();
      trafficRequests.hidden = trafficLatency.hidden = false;
      const labels = points.map((p) => new Date(p.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }));
      lineChart(trafficRequests, { labels, yLabel: `requests per ${traffic.stepSeconds || 10} s`, series: [
        { label: "requests", data: points.map((p) => p.requests) }, { label: "errors", data: points.map((p) => p.errors) }] });
      lineChart(trafficLatency, { labels, yLabel: "ms", series: [
        // Steps without requests have no latency: each measured step is a dot, joined where they follow each other.
        { label: "p50", data: points.map((p) => p.p50Ms), points: 3 }, { label: "p95", data: points.map((p) => p.p95Ms), points: 3 }] });
      return true;
    }

    function callSection() {
      const call = callOf(deployment, group);
      const bodyInput = h("textarea", { id: "try-body", rows: "3", spellcheck: "false" });
      bodyInput.value = JSON.stringify(call.body);
      const panels = h("div", { id: "call-code" });
      const result = h("div", { class: "try-result", id: "try-result", "aria-live": "polite" });
      let tab = "curl";
      const tabs = ["curl", "Python"].map((name) => {
        const button = h("button", { type: "button", class: "tab", id: `tab-${name.toLowerCase()}`, "aria-pressed": String(name === tab), "aria-controls": "call-code" }, name);
        button.addEventListener("click", () => { tab = name; drawCode(); });
        return button;
      });
      function drawCode() {
        for (const button of tabs) button.setAttribute("aria-pressed", String(button.textContent === tab));
        const text = tab === "curl" ? curlOf(call, group, bodyInput.value) : pythonOf(call, deployment, group, bodyInput.value);
        panels.replaceChildren(codeBlock(text, `the ${tab} call`));
      }
      bodyInput.addEventListener("input", drawCode);
      drawCode();
      const send = h("button", { type: "button", class: "button primary", id: "try-send" }, "Send");
      send.addEventListener("click", async () => {
        send.disabled = true;
        result.replaceChildren(h("p", { class: "loading", role: "status" }, "Calling… (a deployment at zero starts a replica first)"));
        try {
          const started = performance.now();
          const answer = await fetch(new URL(call.url).pathname, {
            method: "POST", credentials: "same-origin", signal,
            headers: { "X-Zeroserve-Console": "1", "AI-Resource-Group": group, "Content-Type": "application/json" },
            body: bodyInput.value,
          });
          const took = Math.round(performance.now() - started);
          const text = await answer.text();
          if (answer.status === 401) window.dispatchEvent(new CustomEvent("session-expired"));
          const cold = answer.headers.get("x-cold-start");
          result.replaceChildren(
            h("p", {}, h("strong", { id: "try-status" }, `${answer.status} ${answer.statusText}`), ` in ${took} ms`,
              cold ? ` · X-Cold-Start: ${cold}` : "", answer.headers.get("server-timing") ? h("span", { class: "reason" }, `Server-Timing: ${answer.headers.get("server-timing")}`) : ""),
            h("div", { class: "code-block" }, h("pre", { id: "try-answer", tabindex: "0", "aria-label": "The answer" }, h("code", {}, text))));
          if (coldStartsRoute && cold === "true") setTimeout(drawColdStarts, 500);
        } catch (error) {
          if (error.name !== "AbortError") result.replaceChildren(errorBox(error));
        } finally {
          send.disabled = false;
        }
      });
      return h("section", { "aria-labelledby": "call-title" },
        h("h2", { id: "call-title" }, "Call it"),
        h("p", { class: "hint" }, "Your token is never shown here: the examples read it from $TOKEN (", h("code", {}, "zeroserve token"), " prints one)."),
        field({ id: "try-body", label: "Request body (JSON)", control: bodyInput }),
        h("div", { class: "actions" }, send, h("span", { class: "hint" }, `POST ${call.url}`)),
        result,
        h("div", { class: "tabs", role: "group", "aria-label": "Example call in" }, tabs),
        panels);
    }

    function updateSection() {
      const select = h("select", {}, h("option", { value: "" }, "Choose a configuration"));
      const submit = h("button", { type: "submit", class: "button" }, "Update in place");
      const form = h("form", { id: "update-form", "aria-labelledby": "update-title" },
        h("h2", { id: "update-title" }, "Update in place"),
        h("p", { class: "hint" }, "Same id, same URL: the new configuration's version serves once it is ready, the old one until then."),
        field({ id: "update-configuration", label: "Configuration", control: select }),
        submit);
      api.get("/v2/lm/configurations", signal).then((answer) => {
        for (const c of answer.resources || []) {
          select.append(h("option", { value: c.id }, `${c.name} (${c.executableId}) · ${c.id}${c.id === deployment.configurationId ? " · current" : ""}`));
        }
      }).catch(() => {});
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        fieldError(form, "update-configuration", "");
        if (!select.value) { fieldError(form, "update-configuration", "Choose a configuration."); return; }
        try {
          await api.send("PATCH", base, { configurationId: select.value });
          announce(`Updating ${id}`);
          fieldError(form, "update-configuration", "");
          notice.replaceChildren(h("div", { class: "notice", role: "status" }, "Update scheduled: the new version serves once it is ready."));
        } catch (error) {
          fieldError(form, "update-configuration", error.message);
        }
      });
      return form;
    }

    drawHeader();
    drawReplicas();
    try {
      const since = deployment.createdAt ? `&start=${encodeURIComponent(deployment.createdAt)}` : "";
      const answer = await api.get(`${base}/logs?$top=1000${since}`, signal);
      for (const line of answer.data?.result || []) appendLog(line);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      logList.replaceChildren(h("li", {}, `The log could not be read: ${error.message}`));
    }
    if (!logs.length) logList.append(h("li", { class: "muted empty-log" }, "No log lines yet."));
    drawTimeline();
    drawReplicas();
    drawColdStarts();
    const trafficTimer = setInterval(async () => { if (!await drawTraffic()) clearInterval(trafficTimer); }, TRAFFIC_EVERY_MS);
    signal.addEventListener("abort", () => clearInterval(trafficTimer), { once: true });
    drawTraffic();

    api.stream(`${base}/events`, async (message) => {
      const status = statusOf(message);
      if (status) {
        const previous = liveStatuses.at(-1)?.status || deployment.status;
        applyStatus(deployment, status);
        if (status.status !== previous) liveStatuses.push({ at: new Date().toISOString(), status: status.status, label: status.reason ? `${status.status}: ${status.reason}` : status.status });
        try { deployment = await api.get(base, signal); } catch (error) { if (error.name === "AbortError") return; }
        drawHeader();
        drawTimeline();
        drawReplicas();
        return;
      }
      if (message.event === LOG_TYPE && message.data && typeof message.data === "object") {
        logList.querySelector(".empty-log")?.remove();
        const data = message.data;
        const line = { timestamp: data.timestamp, msg: data.message, source: data.source, stream: data.stream };
        if (logs.some((l) => l.timestamp === line.timestamp && l.msg === line.msg)) return; // read already
        appendLog(line);
        if (line.source === "control-plane") { drawTimeline(); drawReplicas(); }
        if (COLD_START_NOTE.test(line.msg)) drawColdStarts();
      }
    }, signal).catch((error) => {
      if (error.status === 404) notice.replaceChildren(h("div", { class: "notice", role: "status" }, `Deployment ${id} is gone (deleted).`));
    });
  },
};
