// #/models: the group's models (artifacts of kind model), their origin and metrics; select two or more to
// compare; register a model from an object store or a URL. The named exports are what the model and compare
// pages share with this one.
import { h, table, emptyState, errorBox, statusBadge, time } from "../ui.js";

const SCENARIO_UNASSIGNED = "unassigned";

// How an artifact came to be: {via, source, eventId, subject?, webhook?, run?, parameters?}, or null.
export function originOf(artifact) {
  return artifact && artifact.origin && typeof artifact.origin === "object" ? artifact.origin : null;
}

export function originText(artifact) {
  const origin = originOf(artifact);
  if (!origin) return "origin not recorded";
  const via = { api: "API call", event: "event", webhook: "webhook" }[origin.via] || origin.via || "unknown";
  return origin.source ? `${via} · ${origin.source}` : via;
}

// The metrics of artifacts, by artifact id: GET /v2/lm/metrics (executionId is the artifact id).
export async function metricsOf(api, ids) {
  const byId = new Map();
  const chunks = [];
  if (ids === undefined) chunks.push(null);
  else for (let i = 0; i < ids.length; i += 10) chunks.push(ids.slice(i, i + 10));
  for (const chunk of chunks) {
    const query = chunk ? `?executionIds=${chunk.map(encodeURIComponent).join(",")}` : "";
    const answer = await api.get(`/v2/lm/metrics${query}`);
    for (const resource of (answer && answer.resources) || []) byId.set(resource.executionId, resource);
  }
  return byId;
}

// The latest value of each metric name (the highest step, then the latest timestamp).
export function latestMetrics(metrics) {
  const latest = new Map();
  for (const metric of metrics || []) {
    const known = latest.get(metric.name);
    const later = !known || (metric.step ?? -1) > (known.step ?? -1) ||
      ((metric.step ?? -1) === (known.step ?? -1) && (metric.timestamp || "") >= (known.timestamp || ""));
    if (later) latest.set(metric.name, metric);
  }
  return latest;
}

// Whether a lower value of a metric is the better one, guessed from its name.
export function lowerIsBetter(name) {
  return /loss|err|mse|mae|rmse|latency|duration|time|perplexity|wer\b|cer\b|fpr|fnr|cost/i.test(name);
}

export function formatValue(value) {
  if (typeof value !== "number") return String(value ?? "");
  return Math.abs(value) >= 1000 || Number.isInteger(value) ? String(value) : value.toPrecision(4).replace(/\.?0+$/, "");
}

function metricsSummary(resource) {
  const latest = [...latestMetrics(resource && resource.metrics).values()];
  if (!latest.length) return h("span", { class: "muted" }, "no metrics");
  const shown = latest.slice(0, 3).map((m) => `${m.name} ${formatValue(m.value)}`).join(", ");
  return latest.length > 3 ? `${shown}, +${latest.length - 3} more` : shown;
}

// SAP's 400 message names the field ("body.url: ..."): the form shows it next to that field.
export function fieldOf(error) {
  const found = /^body\.([A-Za-z]+)\b/.exec((error && error.message) || "");
  return found ? found[1] : null;
}

function field(label, control, hint) {
  const id = `f-${control.name}`;
  control.id = id;
  const message = h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
  control.setAttribute("aria-describedby", `${id}-error`);
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("p", { class: "hint" }, hint) : null, message);
}

function registerForm(ctx, scenarios, secrets, onCreated) {
  const name = h("input", { name: "name", required: true, maxlength: 256, autocomplete: "off" });
  const scenario = h("select", { name: "scenarioId", required: true },
    scenarios.map((s) => h("option", { value: s.id }, `${s.name || s.id} (${s.id})`)));
  const sourceStore = h("input", { type: "radio", name: "source", value: "store", id: "source-store", checked: secrets.length > 0, disabled: !secrets.length });
  const sourceUrl = h("input", { type: "radio", name: "source", value: "url", id: "source-url", checked: !secrets.length });
  const secret = h("select", { name: "secret" }, secrets.map((s) => h("option", { value: s.name }, s.name)));
  const path = h("input", { name: "path", placeholder: "models/iris/1", autocomplete: "off" });
  const url = h("input", { name: "url", placeholder: "s3://bucket/models/iris, https://…, file://…", autocomplete: "off" });
  const description = h("textarea", { name: "description", rows: 2, maxlength: 5000 });
  const storeFields = h("div", { class: "group" }, field("Object store secret", secret), field("Path in the object store", path));
  const urlFields = h("div", { class: "group" }, field("Artifact URL", url, "Any URL the API accepts: ai://<secret>/<path>, s3://, gs://, https://, file:// under the allowed roots"));
  const formError = h("div", { role: "alert", class: "form-error" });
  const submit = h("button", { type: "submit" }, "Register model");

  function showSource() {
    storeFields.hidden = !sourceStore.checked;
    urlFields.hidden = !sourceUrl.checked;
  }
  sourceStore.addEventListener("change", showSource);
  sourceUrl.addEventListener("change", showSource);
  showSource();

  const form = h("form", { class: "register", "aria-labelledby": "register-title", novalidate: true },
    h("h2", { id: "register-title" }, "Register a model"),
    field("Name", name),
    field("Scenario", scenario),
    h("fieldset", {}, h("legend", {}, "Where the model is"),
      h("div", { class: "choice" }, sourceStore, h("label", { for: "source-store" },
        secrets.length ? "An object store secret of this group" : "An object store secret (none in this group)")),
      h("div", { class: "choice" }, sourceUrl, h("label", { for: "source-url" }, "A URL")),
      storeFields, urlFields),
    field("Description (optional)", description),
    formError, submit);

  function clearErrors() {
    formError.replaceChildren();
    for (const p of form.querySelectorAll(".field-error")) { p.hidden = true; p.textContent = ""; }
    for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  }
  function fieldError(control, message) {
    const p = form.querySelector(`#${control.id}-error`);
    p.textContent = message;
    p.hidden = false;
    control.setAttribute("aria-invalid", "true");
    control.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!name.value.trim()) return fieldError(name, "A model needs a name.");
    let artifactUrl;
    let urlControl = url;
    if (sourceStore.checked) {
      urlControl = path;
      const rest = path.value.trim().replace(/^\/+/, "");
      if (!rest) return fieldError(path, "Give the model's path in the object store.");
      artifactUrl = `ai://${secret.value}/${rest}`;
    } else {
      artifactUrl = url.value.trim();
      if (!artifactUrl) return fieldError(url, "Give the model's URL.");
    }
    const body = { name: name.value.trim(), kind: "model", url: artifactUrl, scenarioId: scenario.value };
    if (description.value.trim()) body.description = description.value.trim();
    submit.disabled = true;
    try {
      const created = await ctx.api.send("POST", "/v2/lm/artifacts", body);
      onCreated(created.id);
    } catch (error) {
      const controls = { name, url: urlControl, scenarioId: scenario, description };
      const at = controls[fieldOf(error)];
      if (at) fieldError(at, error.message.replace(/^body\.[A-Za-z]+:\s*/, ""));
      else formError.replaceChildren(errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export default {
  title: "Models",
  async render(root, ctx) {
    const { api, group } = ctx;
    root.append(h("h1", {}, "Models"), h("p", { class: "lead" }, `Models registered in resource group ${group}: where each came from, its metrics, and how they compare.`));
    const body = h("div", { "aria-busy": "true" }, "Loading models…");
    root.append(body);
    let artifacts, metrics;
    try {
      [artifacts, metrics] = await Promise.all([
        api.get("/v2/lm/artifacts?kind=model").then((a) => a.resources || []),
        metricsOf(api),
      ]);
    } catch (error) {
      body.replaceWith(errorBox(error));
      return;
    }
    const [scenarios, secrets] = await Promise.all([
      api.get("/v2/lm/scenarios").then((a) => a.resources || []).catch(() => []),
      api.get("/v2/admin/objectStoreSecrets").then((a) => a.resources || []).catch(() => []),
    ]);
    if (ctx.signal.aborted) return;
    artifacts.sort((a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""));

    const selected = new Set();
    const search = h("input", { type: "search", id: "model-search", placeholder: "name or description" });
    const scenarioFilter = h("select", { id: "model-scenario" }, h("option", { value: "" }, "every scenario"),
      [...new Set(artifacts.map((a) => a.scenarioId))].sort().map((s) => h("option", { value: s }, s)));
    const originFilter = h("select", { id: "model-origin" }, h("option", { value: "" }, "any origin"),
      h("option", { value: "api" }, "API call"), h("option", { value: "event" }, "event"),
      h("option", { value: "webhook" }, "webhook"), h("option", { value: "none" }, "origin not recorded"));
    const compare = h("button", { type: "button", disabled: true }, "Compare");
    const selection = h("span", { "aria-live": "polite", class: "muted" }, "Select two or more models to compare them.");
    const list = h("div", { class: "models-list" });

    function updateSelection() {
      compare.disabled = selected.size < 2;
      compare.textContent = selected.size >= 2 ? `Compare ${selected.size} models` : "Compare";
      selection.textContent = selected.size < 2 ? "Select two or more models to compare them." : `${selected.size} selected.`;
    }
    compare.addEventListener("click", () => ctx.navigate(`#/compare?ids=${[...selected].map(encodeURIComponent).join(",")}`));

    function matches(artifact) {
      const text = search.value.trim().toLowerCase();
      if (text && !`${artifact.name} ${artifact.description || ""}`.toLowerCase().includes(text)) return false;
      if (scenarioFilter.value && artifact.scenarioId !== scenarioFilter.value) return false;
      const origin = originOf(artifact);
      if (originFilter.value === "none" && origin) return false;
      if (originFilter.value && originFilter.value !== "none" && (!origin || origin.via !== originFilter.value)) return false;
      return true;
    }

    function draw() {
      const rows = artifacts.filter(matches);
      const empty = artifacts.length
        ? "No model matches these filters."
        : `No models in group ${group} yet. Register one below, publish an artifact.created event, or send one by webhook.`;
      list.replaceChildren(table({
        caption: `${rows.length} of ${artifacts.length} models`,
        empty,
        rows,
        columns: [
          { label: "Select", value: (a) => h("input", { type: "checkbox", checked: selected.has(a.id), "aria-label": `Select ${a.name}`,
            onchange: (e) => { if (e.target.checked) selected.add(a.id); else selected.delete(a.id); updateSelection(); } }) },
          { label: "Name", value: (a) => h("a", { href: `#/models/${encodeURIComponent(a.id)}` }, a.name) },
          { label: "Scenario", value: (a) => a.scenarioId === SCENARIO_UNASSIGNED ? h("span", { class: "muted" }, "unassigned") : a.scenarioId },
          { label: "Created", value: (a) => time(a.createdAt) },
          { label: "Status", value: (a) => a.status ? statusBadge(a.status) : h("span", { class: "muted" }, "registered") },
          { label: "Origin", value: (a) => originText(a) },
          { label: "Metrics", value: (a) => metricsSummary(metrics.get(a.id)) },
        ],
      }));
    }
    for (const control of [search, scenarioFilter, originFilter]) control.addEventListener("input", draw);

    const filters = h("div", { class: "filters", role: "search" },
      h("label", { for: "model-search" }, "Search"), search,
      h("label", { for: "model-scenario" }, "Scenario"), scenarioFilter,
      h("label", { for: "model-origin" }, "Origin"), originFilter);
    body.removeAttribute("aria-busy");
    body.replaceChildren(filters, h("div", { class: "actions" }, compare, " ", selection), list,
      scenarios.length
        ? registerForm(ctx, scenarios, secrets, (id) => ctx.navigate(`#/models/${encodeURIComponent(id)}`))
        : emptyState("No scenario to register a model in: the API lists none for this group."));
    draw();
  },
};
