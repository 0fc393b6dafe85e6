// #/models/:id: one model: its details, its origin (the webhook, event or API call that registered it, with
// its source run and parameters where known), its metrics (a table, and a chart of the metrics with steps),
// and the deployments that serve it.
import { h, table, emptyState, errorBox, statusBadge, time } from "../ui.js";
import { lineChart } from "../charts.js";
import { originOf, metricsOf, formatValue } from "./models.js";

function definitions(pairs) {
  return h("dl", { class: "details" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function labelsText(labels) {
  return (labels || []).map((l) => `${l.key ?? l.name}=${l.value}`).join(", ");
}

function originSection(artifact) {
  const section = h("section", { "aria-labelledby": "origin-title" }, h("h2", { id: "origin-title" }, "Origin"));
  const origin = originOf(artifact);
  if (!origin) {
    section.append(emptyState("Origin not recorded: this model was registered before zeroserve kept where models come from."));
    return section;
  }
  const via = { api: "An API call (POST /v2/lm/artifacts)", event: "An artifact.created event", webhook: "A webhook" }[origin.via] || origin.via;
  section.append(definitions([
    ["Registered by", via],
    ["Webhook", origin.webhook],
    ["Source", origin.source],
    ["Event id", origin.eventId ? h("code", {}, origin.eventId) : null],
    ["Subject", origin.subject],
    ["Source run", origin.run],
  ]));
  const parameters = Object.entries(origin.parameters || {});
  section.append(h("h3", {}, "Parameters of the run"), parameters.length
    ? table({ rows: parameters, columns: [{ label: "Parameter", value: ([k]) => k }, { label: "Value", value: ([, v]) => String(v) }] })
    : emptyState("No parameters were recorded with this model."));
  return section;
}

function metricsSection(resource) {
  const section = h("section", { "aria-labelledby": "metrics-title" }, h("h2", { id: "metrics-title" }, "Metrics"));
  const metrics = (resource && resource.metrics) || [];
  if (!metrics.length) {
    section.append(emptyState("No metrics for this model yet. Send them with artifact.created, or with PATCH /v2/lm/metrics (executionId: this model's id)."));
    return section;
  }
  const sorted = [...metrics].sort((a, b) => a.name.localeCompare(b.name) || (a.step ?? -1) - (b.step ?? -1));
  section.append(table({
    caption: "Every recorded value",
    rows: sorted,
    columns: [
      { label: "Metric", value: (m) => m.name },
      { label: "Value", value: (m) => formatValue(m.value) },
      { label: "Step", value: (m) => m.step ?? "" },
      { label: "Recorded", value: (m) => time(m.timestamp) },
      { label: "Labels", value: (m) => labelsText(m.labels) },
    ],
  }));
  const stepped = new Map();
  for (const m of metrics) if (m.step !== undefined && m.step !== null) (stepped.get(m.name) || stepped.set(m.name, []).get(m.name)).push(m);
  const withSteps = [...stepped.entries()].filter(([, values]) => values.length > 1);
  if (withSteps.length && window.Chart) {
    const steps = [...new Set(withSteps.flatMap(([, values]) => values.map((m) => m.step)))].sort((a, b) => a - b);
    const holder = h("div", { class: "chart", style: "max-width: 56rem" });
    section.append(h("h3", {}, "Metrics by step"), holder);
    lineChart(holder, {
      labels: steps,
      yLabel: "value",
      series: withSteps.map(([name, values]) => ({ label: name, data: steps.map((s) => { const at = values.find((m) => m.step === s); return at ? at.value : null; }) })),
    });
  }
  return section;
}

async function servingSection(api, artifactId) {
  const section = h("section", { "aria-labelledby": "serving-title" }, h("h2", { id: "serving-title" }, "Deployments serving it"));
  try {
    const [configurations, deployments] = await Promise.all([
      api.get("/v2/lm/configurations").then((a) => a.resources || []),
      api.get("/v2/lm/deployments").then((a) => a.resources || []),
    ]);
    const binding = new Set(configurations.filter((c) => (c.inputArtifactBindings || []).some((b) => b.artifactId === artifactId)).map((c) => c.id));
    const serving = deployments.filter((d) => binding.has(d.configurationId));
    section.append(table({
      rows: serving,
      empty: binding.size ? "No deployment of its configurations yet. Deploy one." : "No configuration binds this model yet, so nothing serves it. Deploy it.",
      columns: [
        { label: "Deployment", value: (d) => h("a", { href: `#/deployments/${encodeURIComponent(d.id)}` }, d.id) },
        { label: "Status", value: (d) => statusBadge(d.status) },
        { label: "Configuration", value: (d) => d.configurationName || d.configurationId },
        { label: "Created", value: (d) => time(d.createdAt) },
      ],
    }));
  } catch (error) {
    section.append(errorBox(error));
  }
  return section;
}

export default {
  title: "Model",
  async render(root, ctx) {
    const { api, params } = ctx;
    const id = params.id;
    let artifact, metrics;
    try {
      [artifact, metrics] = await Promise.all([api.get(`/v2/lm/artifacts/${encodeURIComponent(id)}`), metricsOf(api, [id])]);
    } catch (error) {
      root.append(h("h1", {}, "Model"), errorBox(error), h("p", {}, h("a", { href: "#/models" }, "Back to the models")));
      return;
    }
    if (ctx.signal.aborted) return;
    root.append(
      h("p", {}, h("a", { href: "#/models" }, "← Models")),
      h("h1", {}, artifact.name),
      definitions([
        ["Id", h("code", {}, artifact.id)],
        ["Kind", artifact.kind],
        ["Scenario", artifact.scenarioId],
        ["URL", h("code", {}, artifact.url)],
        ["Status", artifact.status ? statusBadge(artifact.status) : null],
        ["Created", time(artifact.createdAt)],
        ["Description", artifact.description],
        ["Labels", labelsText(artifact.labels)],
      ]),
      originSection(artifact),
      metricsSection(metrics.get(id)),
      await servingSection(api, id),
    );
  },
};
