// Small DOM helpers every page uses: elements, tables, empty states, errors, a confirmation dialog, copy
// buttons, status badges and times. No inline script or style anywhere (the console's CSP forbids both).

export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    // Through the CSSOM: a style attribute in markup is what the console's CSP refuses.
    else if (name === "style") typeof value === "string" ? (element.style.cssText = value) : Object.assign(element.style, value);
    else if (name === "value" && "value" in element) element.value = value;
    else if (name === "checked" || name === "selected" || name === "disabled") element[name] = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function table({ columns, rows, empty, caption, rowKey }) {
  if (!rows.length) return emptyState(empty || "Nothing here yet.");
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.className }, column.label)))),
      h("tbody", {}, rows.map((row) => h("tr", { dataset: rowKey ? { key: rowKey(row) } : undefined },
        columns.map((column) => h("td", { class: column.className, dataset: { column: column.label } }, column.value(row))))))));
}

export function emptyState(text, ...actions) {
  return h("div", { class: "empty" }, h("p", {}, text), actions);
}

export function errorBox(error) {
  const message = error && error.message ? error.message : String(error);
  return h("div", { class: "error", role: "alert" }, h("strong", {}, "Error: "), message);
}

export function confirmDialog(text, { confirm = "Confirm", cancel = "Cancel", danger = true } = {}) {
  return new Promise((resolve) => {
    const no = h("button", { type: "button", class: "button", value: "cancel" }, cancel);
    const yes = h("button", { type: "button", class: danger ? "button danger" : "button primary", value: "ok" }, confirm);
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-text" },
      h("p", { id: "confirm-text" }, text), h("div", { class: "actions" }, no, yes));
    const opener = document.activeElement;
    const finish = (answer) => {
      dialog.close();
      dialog.remove();
      if (opener && opener.focus) opener.focus();
      resolve(answer);
    };
    no.addEventListener("click", () => finish(false));
    yes.addEventListener("click", () => finish(true));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); });
    document.body.append(dialog);
    dialog.showModal();
    no.focus(); // the safe choice has the focus: Enter does not destroy anything by accident
  });
}

export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) {
    region.textContent = "";
    setTimeout(() => { region.textContent = text; }, 50);
  }
}

export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "button small copy", "aria-label": label }, "Copy");
  button.addEventListener("click", async () => {
    const value = typeof text === "function" ? text() : text;
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      const area = h("textarea", { class: "visually-hidden", "aria-hidden": "true" });
      area.value = value;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
    announce("Copied to the clipboard");
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

export function statusBadge(status) {
  const known = ["UNKNOWN", "PENDING", "RUNNING", "STOPPING", "STOPPED", "DEAD", "COMPLETED"];
  const name = known.includes(status) ? status : "UNKNOWN";
  return h("span", { class: `badge status-${name.toLowerCase()}`, dataset: { status } }, status || "UNKNOWN");
}

const FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function time(isoString) {
  if (!isoString) return h("span", { class: "muted" }, "—");
  const moment = new Date(isoString);
  if (Number.isNaN(moment.getTime())) return h("span", {}, isoString);
  return h("time", { datetime: moment.toISOString(), title: moment.toISOString() }, FORMAT.format(moment));
}

// A labelled form field: the control, its label, a hint and a place for the API's own message about it.
export function field({ id, label, control, hint }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  control.id = id;
  const described = [hintId, errorId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  return h("div", { class: "field", dataset: { field: id } },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    h("p", { class: "field-error", id: errorId, role: "alert" }));
}

export function fieldError(container, id, message) {
  const control = container.querySelector(`#${CSS.escape(id)}`);
  const slot = container.querySelector(`#${CSS.escape(id)}-error`);
  if (slot) slot.textContent = message || "";
  if (control) {
    if (message) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  }
  return Boolean(slot);
}

export function spinner(text = "Loading…") {
  return h("p", { class: "loading", role: "status" }, text);
}
