// Charts over the vendored Chart.js (window.Chart, loaded by index.html's classic script). Each chart is a
// canvas with role="img" and an aria-label that says what it shows in words; the numbers are in a table
// beside it on the pages that need them exactly.

// Colours with at least 3:1 contrast against the white page (WCAG's non-text contrast).
export const PALETTE = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];

function canvasIn(parent, summary) {
  parent.replaceChildren();
  const canvas = document.createElement("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", summary);
  parent.append(canvas);
  return canvas;
}

function common(yLabel, xLabel) {
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { position: "bottom", labels: { color: "#1f2933" } } },
    scales: {
      x: { ticks: { color: "#3e4c59", maxRotation: 0, autoSkip: true, maxTicksLimit: 8 }, title: { display: Boolean(xLabel), text: xLabel || "", color: "#1f2933" } },
      y: { beginAtZero: true, ticks: { color: "#3e4c59" }, title: { display: Boolean(yLabel), text: yLabel || "", color: "#1f2933" } },
    },
  };
}

function summarise(kind, { labels = [], series = [], yLabel = "" }) {
  const names = series.map((s) => s.label).join(", ");
  return `${kind} of ${names || "no series"}${yLabel ? ` in ${yLabel}` : ""}, ${labels.length || (series[0]?.data.length ?? 0)} points`;
}

function datasets(series, options = {}) {
  return series.map((s, index) => ({
    label: s.label, data: s.data,
    borderColor: s.color || PALETTE[index % PALETTE.length],
    backgroundColor: s.color || PALETTE[index % PALETTE.length],
    borderWidth: 2, pointRadius: s.points ?? options.points ?? (s.data.length > 30 ? 0 : 2), tension: 0.2,
  }));
}

export function lineChart(canvasParent, { labels, series, yLabel, xLabel, summary }) {
  const canvas = canvasIn(canvasParent, summary || summarise("Line chart", { labels, series, yLabel }));
  return new window.Chart(canvas, { type: "line", data: { labels, datasets: datasets(series) }, options: common(yLabel, xLabel) });
}

export function barChart(canvasParent, { labels, series, yLabel, xLabel, stacked = false, summary }) {
  const canvas = canvasIn(canvasParent, summary || summarise(stacked ? "Stacked bar chart" : "Bar chart", { labels, series, yLabel }));
  const options = common(yLabel, xLabel);
  options.scales.x.stacked = stacked;
  options.scales.y.stacked = stacked;
  return new window.Chart(canvas, { type: "bar", data: { labels, datasets: datasets(series) }, options });
}

export function scatterChart(canvasParent, { series, yLabel, xLabel, summary }) {
  const canvas = canvasIn(canvasParent, summary || summarise("Scatter chart", { series, yLabel }));
  const options = common(yLabel, xLabel);
  options.scales.x.type = "linear";
  options.scales.y.beginAtZero = false;
  return new window.Chart(canvas, { type: "scatter", data: { datasets: datasets(series, { points: 4 }) }, options });
}
