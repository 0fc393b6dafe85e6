// #/compare?ids=a,b,c: two or more models side by side: their metrics as a grouped bar chart (and a line chart
// per metric that has steps), the best value of each metric marked (higher or lower is better: guessed from
// the name, the user may change it), and the parameters that produced them, differences highlighted.
import { h, table, emptyState, errorBox } from "../ui.js";
import { barChart, lineChart } from "../charts.js";
import { originOf, metricsOf, latestMetrics, lowerIsBetter, formatValue } from "./models.js";

// Each model's settings: origin.parameters, the artifact's labels, and its metrics' labels.
function settingsOf(artifact, resource) {
  const settings = new Map();
  for (const [k, v] of Object.entries((originOf(artifact) || {}).parameters || {})) settings.set(`parameter ${k}`, String(v));
  for (const label of artifact.labels || []) settings.set(`label ${label.key}`, label.value);
  for (const metric of (resource && resource.metrics) || []) {
    for (const label of metric.labels || []) {
      if (label.name === "metrics.ai.sap.com/Artifact.name") continue;
      settings.set(`metric label ${label.name}`, label.value);
    }
  }
  const origin = originOf(artifact);
  if (origin && origin.run) settings.set("source run", origin.run);
  return settings;
}

function best(values, lower) {
  const numbers = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!numbers.length) return null;
  return lower ? Math.min(...numbers) : Math.max(...numbers);
}

export default {
  title: "Compare models",
  async render(root, ctx) {
    const { api, query } = ctx;
    const ids = [...new Set((query.get("ids") || "").split(",").map((s) => s.trim()).filter(Boolean))];
    root.append(h("p", {}, h("a", { href: "#/models" }, "← Models")), h("h1", {}, "Compare models"));
    if (ids.length < 2) {
      root.append(emptyState("Pick two or more models on the Models page to compare them."));
      return;
    }
    let artifacts, metrics;
    try {
      [artifacts, metrics] = await Promise.all([
        Promise.all(ids.map((id) => api.get(`/v2/lm/artifacts/${encodeURIComponent(id)}`))),
        metricsOf(api, ids),
      ]);
    } catch (error) {
      root.append(errorBox(error));
      return;
    }
    if (ctx.signal.aborted) return;
    const names = artifacts.map((a) => a.name);
    // Two models of one name are told apart by their id's start.
    const labels = artifacts.map((a) => (names.filter((n) => n === a.name).length > 1 ? `${a.name} (${a.id.slice(0, 8)})` : a.name));
    const latest = artifacts.map((a) => latestMetrics((metrics.get(a.id) || {}).metrics));
    const metricNames = [...new Set(latest.flatMap((m) => [...m.keys()]))].sort();
    const direction = new Map(metricNames.map((n) => [n, lowerIsBetter(n) ? "lower" : "higher"]));

    root.append(h("p", { class: "lead" }, `${artifacts.length} models: ${labels.join(", ")}.`));

    const metricsSection = h("section", { "aria-labelledby": "cmp-metrics" }, h("h2", { id: "cmp-metrics" }, "Metrics"));
    root.append(metricsSection);
    if (!metricNames.length) {
      metricsSection.append(emptyState("None of these models has metrics yet."));
    } else {
      const chart = h("div", { class: "chart", style: "max-width: 56rem" });
      const tableHolder = h("div");
      metricsSection.append(chart, h("h3", {}, "Which gives the best results"), tableHolder);
      barChart(chart, {
        labels: metricNames,
        yLabel: "latest value",
        series: artifacts.map((a, i) => ({ label: labels[i], data: metricNames.map((n) => (latest[i].get(n) ? latest[i].get(n).value : null)) })),
      });
      const drawTable = () => {
        const rows = metricNames.map((name) => {
          const values = latest.map((m) => (m.get(name) ? m.get(name).value : undefined));
          return { name, values, best: best(values, direction.get(name) === "lower") };
        });
        tableHolder.replaceChildren(table({
          caption: "Latest value of each metric; ★ marks the best",
          rows,
          columns: [
            { label: "Metric", value: (r) => r.name },
            { label: "Better", value: (r) => h("select", { "aria-label": `Which value of ${r.name} is better`,
              onchange: (e) => { direction.set(r.name, e.target.value); drawTable(); } },
              h("option", { value: "higher", selected: direction.get(r.name) === "higher" }, "higher"),
              h("option", { value: "lower", selected: direction.get(r.name) === "lower" }, "lower")) },
            ...labels.map((label, i) => ({ label, value: (r) => {
              const v = r.values[i];
              if (v === undefined) return h("span", { class: "muted" }, "—");
              const isBest = r.best !== null && v === r.best;
              return isBest ? h("strong", { class: "best", title: "best" }, `★ ${formatValue(v)}`, h("span", { class: "visually-hidden" }, " (best)")) : formatValue(v);
            } })),
          ],
        }));
      };
      drawTable();

      // A line chart for each metric recorded at more than one step.
      for (const name of metricNames) {
        const perModel = artifacts.map((a) => ((metrics.get(a.id) || {}).metrics || []).filter((m) => m.name === name && m.step !== undefined && m.step !== null));
        if (!perModel.some((values) => values.length > 1)) continue;
        const steps = [...new Set(perModel.flat().map((m) => m.step))].sort((a, b) => a - b);
        const holder = h("div", { class: "chart", style: "max-width: 56rem" });
        metricsSection.append(h("h3", {}, `${name} by step`), holder);
        lineChart(holder, {
          labels: steps,
          yLabel: name,
          series: perModel.map((values, i) => ({ label: labels[i], data: steps.map((s) => { const at = values.find((m) => m.step === s); return at ? at.value : null; }) })),
        });
      }
    }

    const settingsSection = h("section", { "aria-labelledby": "cmp-settings" }, h("h2", { id: "cmp-settings" }, "Settings that produced them"));
    root.append(settingsSection);
    const settings = artifacts.map((a) => settingsOf(a, metrics.get(a.id)));
    const keys = [...new Set(settings.flatMap((s) => [...s.keys()]))].sort();
    if (!keys.length) {
      settingsSection.append(emptyState("No parameters or labels were recorded with these models (origin not recorded, or registered without them)."));
    } else {
      const rows = keys.map((key) => {
        const values = settings.map((s) => s.get(key));
        return { key, values, differs: new Set(values.map((v) => v ?? "")).size > 1 };
      });
      const differing = rows.filter((r) => r.differs).length;
      settingsSection.append(h("p", {}, `${differing} of ${rows.length} settings differ between these models (highlighted).`), table({
        rows,
        columns: [
          { label: "Setting", value: (r) => r.differs ? h("span", { class: "differs" }, r.key, h("span", { class: "visually-hidden" }, " (differs)")) : r.key },
          ...labels.map((label, i) => ({ label, value: (r) => {
            const v = r.values[i];
            const text = v === undefined ? h("span", { class: "muted" }, "—") : v;
            return r.differs ? h("mark", { class: "differs" }, text) : text;
          } })),
        ],
      }));
    }
  },
};
