// #/deploy: a model (a registered artifact) or an existing configuration, an executable (serving template),
// a resource plan and the template's parameters. The InferenceService it would get is rendered by the API's
// dry run (POST /v2/renderings, what `zeroserve apply --dry-run` prints) and shown before anything is
// created; only then can it be deployed: a configuration (POST /v2/lm/configurations) and a deployment of it
// (POST /v2/lm/deployments). Every check is the API's own: its 400 message is shown beside the field it names.

import { h, emptyState, errorBox, field, fieldError, announce, spinner } from "../ui.js";

const PLAN_PARAMETER = "resourcePlan";

// The rendered InferenceService as YAML, the way a Kubernetes user reads it.
export function toYaml(value, indent = "") {
  const scalar = (v) => {
    if (v === null || v === undefined) return "null";
    if (typeof v === "number" || typeof v === "boolean") return String(v);
    const text = String(v);
    return /^[\w./:@-][\w ./:@,()-]*$/.test(text) && !/^(true|false|null|yes|no|~|[\d.+-]+)$/i.test(text) && !text.endsWith(" ")
      ? text : JSON.stringify(text);
  };
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return value.map((item) => {
      if (item && typeof item === "object" && Object.keys(item).length) {
        const nested = toYaml(item, `${indent}  `);
        return `${indent}- ${nested.slice(indent.length + 2)}`;
      }
      return `${indent}- ${toYaml(item, `${indent}  `).trim()}`;
    }).join("\n");
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    return keys.map((key) => {
      const item = value[key];
      const name = `${indent}${scalar(key)}:`;
      if (item && typeof item === "object" && (Array.isArray(item) ? item.length : Object.keys(item).length)) {
        return `${name}\n${toYaml(item, Array.isArray(item) ? indent : `${indent}  `)}`;
      }
      return `${name} ${toYaml(item, `${indent}  `).trim()}`;
    }).join("\n");
  }
  return `${indent}${scalar(value)}`;
}

// The field a 400 of the API is about: "body.<field>: ..." names it, or a quoted parameter or input name.
function fieldOf(message, executable) {
  const named = /^body\.(\w+)/.exec(message || "");
  const quoted = [...(message || "").matchAll(/'([^']+)'/g)].map((m) => m[1]);
  // A quoted name first ('maxReplicas'), else the first parameter the message names (spec.predictor.maxReplicas).
  const text = message || "";
  const mentioned = (executable?.parameters || []).map((p) => ({ name: p.name, at: text.search(new RegExp(`\\b${p.name}\\b`)) }))
    .filter((p) => p.at >= 0).sort((a, b) => a.at - b.at);
  const parameter = quoted.find((q) => executable?.parameters?.some((p) => p.name === q)) || mentioned[0]?.name;
  if (parameter) return parameter === PLAN_PARAMETER ? "deploy-plan" : `param-${parameter}`;
  const input = quoted.find((q) => executable?.inputArtifacts?.some((a) => a.name === q));
  if (input) return `artifact-${input}`;
  const byField = { name: "deploy-name", executableId: "deploy-executable", scenarioId: "deploy-executable", ttl: "deploy-ttl",
    configurationId: "deploy-configuration", inputArtifactBindings: `artifact-${executable?.inputArtifacts?.[0]?.name}` };
  if (named && byField[named[1]]) return byField[named[1]];
  if (/resource plan/i.test(message || "")) return "deploy-plan";
  return null;
}

export default {
  title: "Deploy",
  async render(root, ctx) {
    const { api, signal, navigate, group } = ctx;
    root.append(h("h1", {}, "Deploy a model"), spinner("Reading the models, executables and plans…"));
    const [artifacts, scenarios, configurations, plans] = await Promise.all([
      api.get("/v2/lm/artifacts", signal).then((a) => a.resources || []),
      api.get("/v2/lm/scenarios", signal).then((s) => s.resources || []),
      api.get("/v2/lm/configurations", signal).then((c) => c.resources || []),
      api.get("/v2/admin/resources/instanceTypes", signal).then((p) => p.instanceTypes || {}).catch(() => ({})),
    ]);
    const executables = (await Promise.all(scenarios.map((s) =>
      api.get(`/v2/lm/scenarios/${encodeURIComponent(s.id)}/executables`, signal).then((e) => e.resources || [])))).flat();
    root.replaceChildren(h("h1", {}, "Deploy a model"));
    if (!executables.length) {
      root.append(emptyState(`Resource group ${group} has no executable (serving template) to deploy with.`));
      return;
    }

    let source = artifacts.length || !configurations.length ? "artifact" : "configuration";
    let previewed = null; // the request the shown rendering is of: Deploy is only for that one
    const formError = h("div", { id: "deploy-error" });
    const rendered = h("div", { class: "rendered", id: "rendered", "aria-live": "polite" },
      emptyState("Preview the InferenceService to see what will run, then deploy it."));

    const sourceRadios = [["artifact", "A registered model"], ["configuration", "An existing configuration"]].map(([value, label]) =>
      h("label", {}, h("input", { type: "radio", name: "deploy-source", value, checked: value === source }), label));
    const configurationSelect = h("select", {}, h("option", { value: "" }, "Choose a configuration"),
      configurations.map((c) => h("option", { value: c.id }, `${c.name} (${c.executableId}) · ${c.id}`)));
    const executableSelect = h("select", {},
      scenarios.map((s) => h("optgroup", { label: s.name || s.id },
        executables.filter((e) => e.scenarioId === s.id).map((e) => h("option", { value: e.id, selected: e.id === "sklearn" }, e.id)))));
    const planSelect = h("select", {}, h("option", { value: "" }, "The executable's default"),
      Object.entries(plans).map(([name, p]) => h("option", { value: name },
        `${name}: ${p.cpu} CPU, ${p.memory} memory${p.gpu ? `, ${p.gpu} GPU${p.gpuType ? ` (${p.gpuType})` : ""}` : ""}`)));
    const nameInput = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
    const ttlInput = h("input", { type: "text", placeholder: "e.g. 2h", autocomplete: "off", size: "8" });
    const artifactFields = h("div", { id: "artifact-fields" });
    const parameterFields = h("div", { id: "parameter-fields" });
    const parameterBox = h("details", { class: "parameters" }, h("summary", {}, "Template parameters (defaults apply when empty)"), parameterFields);
    const configurationField = field({ id: "deploy-configuration", label: "Configuration", control: configurationSelect,
      hint: "Deployed as it is: its executable, parameters and model." });
    const howFields = h("div", { id: "how-fields" },
      field({ id: "deploy-executable", label: "Executable (serving template)", control: executableSelect }),
      field({ id: "deploy-plan", label: "Resource plan", control: planSelect, hint: "CPU, memory and GPUs each replica gets." }),
      parameterBox,
      field({ id: "deploy-name", label: "Name", control: nameInput, hint: "The configuration's name; the deployment is listed by it." }));
    const preview = h("button", { type: "button", class: "button", id: "preview" }, "Preview the InferenceService");
    const deploy = h("button", { type: "submit", class: "button primary", id: "deploy", disabled: true }, "Deploy");
    const form = h("form", { id: "deploy-form", novalidate: true, "aria-labelledby": "deploy-what" },
      h("fieldset", {}, h("legend", { id: "deploy-what" }, "What to deploy"),
        h("div", { class: "radio-row", role: "radiogroup", "aria-label": "Deploy from" }, sourceRadios),
        artifactFields, configurationField),
      h("fieldset", { id: "deploy-how" }, h("legend", {}, "How it runs"), howFields),
      field({ id: "deploy-ttl", label: "Time to live (optional)", control: ttlInput, hint: "Stopped and deleted after this long: 30m, 2h, 1d." }),
      formError,
      h("div", { class: "actions" }, preview, deploy,
        h("span", { class: "hint", id: "deploy-hint" }, "Deploy is enabled once the preview of these values is shown.")));
    root.append(h("div", { class: "deploy-form" }, form,
      h("section", { "aria-labelledby": "rendered-title" }, h("h2", { id: "rendered-title" }, "The InferenceService that will be created"), rendered)));

    const executable = () => executables.find((e) => e.id === executableSelect.value);
    const chosenConfiguration = () => configurations.find((c) => c.id === configurationSelect.value);

    function drawArtifacts() {
      const inputs = executable()?.inputArtifacts || [];
      artifactFields.replaceChildren(...inputs.map((input, index) => {
        const select = h("select", {}, h("option", { value: "" }, artifacts.length ? "Choose a model" : "No artifact registered"),
          artifacts.map((a) => h("option", { value: a.id }, `${a.name} (${a.kind}) · ${a.id}`)));
        if (artifacts.length === 1) select.value = artifacts[0].id;
        select.addEventListener("change", () => {
          const chosen = artifacts.find((a) => a.id === select.value);
          if (chosen && !nameInput.value) nameInput.value = chosen.name;
          stale();
        });
        return field({ id: `artifact-${input.name}`, label: index === 0 ? "Model artifact" : `Artifact for input ${input.name}`, control: select,
          hint: input.description || (artifacts.length ? null : "Register one first (Models, or zeroserve artifacts register).") });
      }));
      const first = artifacts.length === 1 ? artifacts[0] : null;
      if (first && !nameInput.value) nameInput.value = first.name;
    }

    function drawParameters() {
      const parameters = (executable()?.parameters || []).filter((p) => p.name !== PLAN_PARAMETER);
      const hasPlan = (executable()?.parameters || []).some((p) => p.name === PLAN_PARAMETER);
      planSelect.closest(".field").hidden = !hasPlan;
      parameterBox.open = parameters.some((p) => p.default === undefined);
      parameterFields.replaceChildren(...parameters.map((p) => {
        const input = h("input", { type: "text", placeholder: p.default === undefined ? "required" : p.default === "" ? "optional" : `default: ${p.default}`, autocomplete: "off", spellcheck: "false" });
        input.addEventListener("input", stale);
        return field({ id: `param-${p.name}`, label: p.name, control: input, hint: p.description || null });
      }));
    }

    function drawSource() {
      const fromArtifact = source === "artifact";
      artifactFields.hidden = !fromArtifact;
      configurationField.hidden = fromArtifact;
      howFields.hidden = !fromArtifact;
      stale();
    }

    function stale() {
      previewed = null;
      deploy.disabled = true;
      for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
      for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
      formError.replaceChildren();
    }

    // What the form asks for: the dry run's body and what deploying takes.
    function request() {
      if (source === "configuration") {
        const c = chosenConfiguration();
        if (!c) return { error: ["deploy-configuration", "Choose a configuration."] };
        return { configurationId: c.id, executable: executables.find((e) => e.id === c.executableId), rendering: {
          executableId: c.executableId, parameterBindings: c.parameterBindings || [],
          inputArtifactBindings: (c.inputArtifactBindings || []).map((b) => ({ key: b.key, artifactId: b.artifactId })) } };
      }
      const chosen = executable();
      const inputs = [];
      for (const input of chosen.inputArtifacts || []) {
        const value = form.querySelector(`#artifact-${CSS.escape(input.name)}`).value;
        if (!value) return { error: [`artifact-${input.name}`, "Choose the model to deploy."] };
        inputs.push({ key: input.name, artifactId: value });
      }
      const bindings = [];
      for (const p of chosen.parameters || []) {
        const value = p.name === PLAN_PARAMETER ? planSelect.value : form.querySelector(`#param-${CSS.escape(p.name)}`).value.trim();
        if (value !== "") bindings.push({ key: p.name, value });
      }
      return { executable: chosen, rendering: { executableId: chosen.id, parameterBindings: bindings, inputArtifactBindings: inputs } };
    }

    function showError(error, chosen) {
      const id = fieldOf(error.message, chosen);
      if (id && id.startsWith("param-")) parameterBox.open = true;
      if (!(id && fieldError(form, id, error.message))) formError.replaceChildren(errorBox(error));
      const control = id && form.querySelector(`#${CSS.escape(id)}`);
      if (control) control.focus();
    }

    preview.addEventListener("click", async () => {
      stale();
      const asked = request();
      if (asked.error) { fieldError(form, ...asked.error); return; }
      rendered.replaceChildren(spinner("Rendering…"));
      try {
        const answer = await api.send("POST", "/v2/renderings", asked.rendering, signal);
        const yaml = toYaml(answer.inferenceService);
        rendered.replaceChildren(
          h("p", {}, `Resource plan: ${answer.resourcePlan || "—"}`),
          h("div", { class: "code-block" }, h("pre", { id: "rendered-yaml", tabindex: "0", "aria-label": "The rendered InferenceService, YAML" }, h("code", {}, yaml))));
        previewed = asked;
        deploy.disabled = false;
        announce("The InferenceService is rendered: it can be deployed now");
      } catch (error) {
        if (error.name === "AbortError") return;
        rendered.replaceChildren(emptyState("The API refused these values: see the message beside the field."));
        showError(error, asked.executable);
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!previewed) return;
      deploy.disabled = true;
      const asked = previewed;
      try {
        let configurationId = asked.configurationId;
        if (!configurationId) {
          const created = await api.send("POST", "/v2/lm/configurations", {
            name: nameInput.value.trim() || asked.executable.id, executableId: asked.executable.id, scenarioId: asked.executable.scenarioId,
            parameterBindings: asked.rendering.parameterBindings, inputArtifactBindings: asked.rendering.inputArtifactBindings }, signal);
          configurationId = created.id;
        }
        const ttl = ttlInput.value.trim();
        const deployment = await api.send("POST", "/v2/lm/deployments", { configurationId, ...(ttl ? { ttl } : {}) }, signal);
        announce(`Deployment ${deployment.id} requested`);
        navigate(`#/deployments/${encodeURIComponent(deployment.id)}`);
      } catch (error) {
        if (error.name === "AbortError") return;
        deploy.disabled = false;
        showError(error, asked.executable);
      }
    });

    for (const radio of form.querySelectorAll('input[name="deploy-source"]')) {
      radio.addEventListener("change", () => { source = radio.value; drawSource(); });
    }
    executableSelect.addEventListener("change", () => { drawArtifacts(); drawParameters(); stale(); });
    for (const control of [planSelect, nameInput, ttlInput, configurationSelect]) control.addEventListener("input", stale);
    drawArtifacts();
    drawParameters();
    drawSource();
  },
};
