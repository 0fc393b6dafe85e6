// #/admin (operator tokens only; the API answers 403 to others): API clients (create: the secret shown once;
// delete), the group's object store secrets, and resource groups, each change confirmed first.
import { h, table, emptyState, errorBox, confirmDialog, copyButton, time } from "../ui.js";

function forbidden(error) {
  return error && error.status === 403
    ? errorBox({ message: `Only an operator may do this: ${error.message}` })
    : errorBox(error);
}

// A section that lists, creates and deletes one kind of thing.
function section({ id, title, load, columns, empty, form, remove, describe }) {
  const holder = h("div");
  const notice = h("div", { "aria-live": "polite" });
  const part = h("section", { "aria-labelledby": id }, h("h2", { id }, title), notice, holder, form ? form(reload, notice) : null);
  async function reload() {
    holder.setAttribute("aria-busy", "true");
    try {
      const rows = await load();
      holder.replaceChildren(table({
        rows, empty,
        columns: [...columns, ...(remove ? [{ label: "Actions", value: (row) => h("button", { type: "button", class: "danger",
          "aria-label": `Delete ${describe(row)}`,
          onclick: async () => {
            if (!(await confirmDialog(`Delete ${describe(row)}? This cannot be undone.`))) return;
            try {
              await remove(row);
              notice.replaceChildren(h("p", { class: "ok" }, `Deleted ${describe(row)}.`));
              await reload();
            } catch (error) {
              notice.replaceChildren(forbidden(error));
            }
          } }, "Delete") }] : [])],
      }));
    } catch (error) {
      holder.replaceChildren(forbidden(error));
    }
    holder.removeAttribute("aria-busy");
  }
  return { part, reload };
}

function inlineForm(label, fields, submit) {
  const error = h("div", { role: "alert" });
  const button = h("button", { type: "submit" }, label);
  const form = h("form", { class: "inline-form", novalidate: true },
    h("fieldset", {}, h("legend", {}, label), fields.map(([text, control]) => {
      control.id = control.id || `admin-${control.name}`;
      return h("div", { class: "field" }, h("label", { for: control.id }, text), control);
    }), button), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    button.disabled = true;
    try {
      await submit();
      form.reset();
    } catch (problem) {
      error.replaceChildren(forbidden(problem));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function clientsSection(api) {
  return section({
    id: "admin-clients", title: "API clients",
    load: async () => (await api.get("/v2/admin/clients")).resources || [],
    empty: "No API clients.",
    describe: (c) => `client ${c.name ? `${c.name} (${c.clientId})` : c.clientId}`,
    columns: [
      { label: "Client id", value: (c) => h("code", {}, c.clientId) },
      { label: "Name", value: (c) => c.name || "" },
      { label: "Resource groups", value: (c) => (c.groups || []).join(", ") },
      { label: "Created", value: (c) => time(c.createdAt) },
    ],
    remove: (c) => api.send("DELETE", `/v2/admin/clients/${encodeURIComponent(c.clientId)}`),
    form: (reload, notice) => {
      const name = h("input", { name: "client-name", autocomplete: "off" });
      const groups = h("input", { name: "client-groups", value: "default", autocomplete: "off", "aria-describedby": "client-groups-hint" });
      const form = inlineForm("Create a client", [["Name", name], ["Resource groups (comma-separated, * for every group)", groups]], async () => {
        const body = { groups: groups.value.split(",").map((g) => g.trim()).filter(Boolean) };
        if (name.value.trim()) body.name = name.value.trim();
        if (!(await confirmDialog(`Create a client for ${body.groups.join(", ")}?`))) return;
        const created = await api.send("POST", "/v2/admin/clients", body);
        notice.replaceChildren(h("div", { class: "secret-once", role: "status" },
          h("p", {}, h("strong", {}, "Client created. Copy its secret now: it is shown only this once.")),
          h("p", {}, "Client id ", h("code", {}, created.clientId), " ", copyButton(created.clientId, "Copy client id")),
          h("p", {}, "Client secret ", h("code", { class: "secret" }, created.clientSecret), " ", copyButton(created.clientSecret, "Copy client secret"))));
        await reload();
      });
      form.append(h("p", { id: "client-groups-hint", class: "hint" }, "A client of * is an operator: it may use every group and this page."));
      return form;
    },
  });
}

function secretsSection(api, group) {
  return section({
    id: "admin-secrets", title: `Object store secrets of group ${group}`,
    load: async () => (await api.get("/v2/admin/objectStoreSecrets")).resources || [],
    empty: `No object store secrets in group ${group}. Add one to register models from an object store.`,
    describe: (s) => `object store secret ${s.name}`,
    columns: [
      { label: "Name", value: (s) => s.name },
      { label: "Type", value: (s) => (s.metadata || {})["storage.ai.sap.com/type"] || "" },
      { label: "Bucket or directory", value: (s) => (s.metadata || {})["storage.ai.sap.com/bucket"] || (s.metadata || {})["storage.ai.sap.com/pathPrefix"] || "" },
      { label: "Endpoint", value: (s) => (s.metadata || {})["storage.ai.sap.com/endpoint"] || "" },
    ],
    remove: (s) => api.send("DELETE", `/v2/admin/objectStoreSecrets/${encodeURIComponent(s.name)}`),
    form: (reload) => {
      const name = h("input", { name: "secret-name", autocomplete: "off" });
      const type = h("select", { name: "secret-type" }, h("option", { value: "S3" }, "S3"), h("option", { value: "local" }, "local directory"));
      const bucket = h("input", { name: "secret-bucket", autocomplete: "off" });
      const endpoint = h("input", { name: "secret-endpoint", autocomplete: "off" });
      const region = h("input", { name: "secret-region", autocomplete: "off" });
      const prefix = h("input", { name: "secret-prefix", autocomplete: "off" });
      const keyId = h("input", { name: "secret-key-id", autocomplete: "off" });
      const key = h("input", { name: "secret-key", type: "password", autocomplete: "new-password" });
      return inlineForm("Add an object store secret", [["Name", name], ["Type", type], ["Bucket (S3)", bucket], ["Endpoint (S3)", endpoint],
        ["Region (S3)", region], ["Path prefix (the directory, for local)", prefix], ["Access key id (S3)", keyId], ["Secret access key (S3)", key]], async () => {
        const body = { name: name.value.trim(), type: type.value, data: {} };
        for (const [field, control] of [["bucket", bucket], ["endpoint", endpoint], ["region", region], ["pathPrefix", prefix]]) {
          if (control.value.trim()) body[field] = control.value.trim();
        }
        if (keyId.value) body.data.AWS_ACCESS_KEY_ID = keyId.value;
        if (key.value) body.data.AWS_SECRET_ACCESS_KEY = key.value;
        if (!(await confirmDialog(`Add object store secret ${body.name} to group ${group}?`))) return;
        await api.send("POST", "/v2/admin/objectStoreSecrets", body);
        await reload();
      });
    },
  });
}

function groupsSection(api) {
  return section({
    id: "admin-groups", title: "Resource groups",
    load: async () => (await api.get("/v2/admin/resourceGroups")).resources || [],
    empty: "No resource groups.",
    describe: (g) => `resource group ${g.resourceGroupId}`,
    columns: [
      { label: "Resource group", value: (g) => g.resourceGroupId },
      { label: "Status", value: (g) => g.status || "" },
      { label: "Labels", value: (g) => (g.labels || []).map((l) => `${l.key}=${l.value}`).join(", ") },
      { label: "Created", value: (g) => time(g.createdAt) },
    ],
    remove: (g) => api.send("DELETE", `/v2/admin/resourceGroups/${encodeURIComponent(g.resourceGroupId)}`),
    form: (reload) => {
      const id = h("input", { name: "group-id", autocomplete: "off", pattern: "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" });
      return inlineForm("Create a resource group", [["Resource group id (lower-case letters, digits and -)", id]], async () => {
        if (!(await confirmDialog(`Create resource group ${id.value.trim()}?`))) return;
        await api.send("POST", "/v2/admin/resourceGroups", { resourceGroupId: id.value.trim() });
        await reload();
      });
    },
  });
}

export default {
  title: "Admin",
  async render(root, ctx) {
    const { api, group, session } = ctx;
    root.append(h("h1", {}, "Admin"));
    if (session && !session.admin) {
      root.append(errorBox({ message: "Admin is for operators: this client's token does not cover every resource group, so the API answers 403 to these pages. Sign in with an operator client (created with --group '*')." }));
      return;
    }
    const parts = [clientsSection(api), secretsSection(api, group), groupsSection(api)];
    root.append(...parts.map((p) => p.part));
    await Promise.all(parts.map((p) => p.reload()));
  },
};
