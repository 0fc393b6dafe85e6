// The console's shell: sign-in, the resource group picker, the navigation and the hash router. Each page is
// a module under pages/, imported the first time it is visited: export default { title, async render(root, ctx) }.

import { api, session as sessions, setGroup, ApiError } from "./api.js";
import { h, errorBox, emptyState, spinner } from "./ui.js";

const ROUTES = [
  { pattern: /^\/deployments$/, page: "deployments", nav: "deployments" },
  { pattern: /^\/deployments\/([^/]+)$/, page: "deployment", params: ["id"], nav: "deployments" },
  { pattern: /^\/deploy$/, page: "deploy", nav: "deploy" },
  { pattern: /^\/models$/, page: "models", nav: "models" },
  { pattern: /^\/models\/([^/]+)$/, page: "model", params: ["id"], nav: "models" },
  { pattern: /^\/compare$/, page: "compare", nav: "compare" },
  { pattern: /^\/events$/, page: "events", nav: "events" },
  { pattern: /^\/admin$/, page: "admin", nav: "admin", admin: true },
];
const NAV = [
  ["deployments", "Deployments"], ["deploy", "Deploy"], ["models", "Models"], ["compare", "Compare"],
  ["events", "Events"], ["admin", "Admin"],
];
const GROUP_KEY = "zeroserve.console.group";
const EXPIRED = "Your session expired, sign in again";

const state = { session: null, group: null, groups: [], controller: null, signingIn: false };
const main = document.getElementById("main");
const top = document.getElementById("top");

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/deployments";
  const [path, queryText = ""] = raw.split("?");
  return { path, query: new URLSearchParams(queryText) };
}

function navigate(hash) {
  const target = hash.startsWith("#") ? hash : `#${hash}`;
  if (location.hash === target) route();
  else location.hash = target;
}

function leavePage() {
  if (state.controller) state.controller.abort();
  state.controller = null;
}

function renderNav(active) {
  const nav = document.getElementById("nav");
  const links = NAV.filter(([name]) => name !== "admin" || state.session?.admin).map(([name, label]) =>
    h("a", { href: `#/${name}`, "aria-current": name === active ? "page" : null }, label));
  nav.replaceChildren(h("ul", {}, links.map((link) => h("li", {}, link))));
}

async function route() {
  if (!state.session) return;
  leavePage();
  const { path, query } = parseHash();
  const found = ROUTES.map((r) => ({ r, match: r.pattern.exec(path) })).find((x) => x.match);
  renderNav(found?.r.nav);
  const controller = new AbortController();
  state.controller = controller;
  const root = h("div", { class: "page" });
  main.replaceChildren(root);
  if (!found) {  // (Admin is routed for everyone: its page says why a client that is no operator cannot use it)
    root.append(h("h1", {}, "Not found"), emptyState("There is no such page here."), h("p", {}, h("a", { href: "#/deployments" }, "Go to the deployments")));
    document.title = "Not found · zeroserve";
    return;
  }
  const params = Object.fromEntries((found.r.params || []).map((name, index) => [name, decodeURIComponent(found.match[index + 1])]));
  root.append(spinner());
  let page;
  try {
    page = (await import(`./pages/${found.r.page}.js`)).default;
  } catch (error) {
    root.replaceChildren(h("h1", {}, "Page unavailable"), emptyState("This page is not part of this zeroserve's console yet."));
    return;
  }
  if (controller.signal.aborted) return;
  document.title = `${page.title} · zeroserve`;
  const ctx = { api, group: state.group, params, query, navigate, signal: controller.signal, session: state.session };
  try {
    root.replaceChildren();
    await page.render(root, ctx);
    // A screen reader hears where it landed; the keyboard starts from the page's heading.
    const heading = root.querySelector("h1");
    if (heading && !controller.signal.aborted && !main.contains(document.activeElement)) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    if (error instanceof ApiError && error.status === 401) return; // the sign-in page takes over
    root.append(errorBox(error));
  }
}

async function loadGroups() {
  const own = state.session.groups.filter((g) => g !== "*");
  if (!state.session.admin) return own.length ? own : ["default"];
  try {
    const listed = await api.get("/v2/admin/resourceGroups");
    const ids = (listed.resources || []).map((g) => g.resourceGroupId);
    return [...new Set(["default", ...ids])].sort();
  } catch (error) {
    return ["default"];
  }
}

function pickGroup(name) {
  state.group = name;
  setGroup(name);
  localStorage.setItem(GROUP_KEY, name);
}

async function startShell(current) {
  state.session = current;
  const groups = await loadGroups();
  state.groups = groups;
  const saved = localStorage.getItem(GROUP_KEY);
  pickGroup(groups.includes(saved) ? saved : groups.includes("default") ? "default" : groups[0]);
  const picker = document.getElementById("group-picker");
  picker.replaceChildren(...groups.map((g) => h("option", { value: g, selected: g === state.group }, g)));
  document.getElementById("who").textContent = `${current.clientId}${current.admin ? " (admin)" : ""}`;
  top.hidden = false;
  if (!location.hash || location.hash === "#" || location.hash === "#/") history.replaceState(null, "", "#/deployments");
  await route();
}

function signInPage(message) {
  leavePage();
  state.session = null;
  top.hidden = true;
  document.title = "Sign in · zeroserve";
  const status = h("div", { id: "sign-in-message", role: "alert", class: message ? "notice" : "" }, message || "");
  const clientId = h("input", { id: "client-id", name: "clientId", autocomplete: "username", required: true, spellcheck: "false" });
  const secret = h("input", { id: "client-secret", name: "clientSecret", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h("form", { class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in to zeroserve"),
    h("p", { class: "hint" }, "With an API client's id and secret (", h("code", {}, "zeroserve clients create"), " prints them)."),
    status,
    h("div", { class: "field" }, h("label", { for: "client-id" }, "Client id"), clientId),
    h("div", { class: "field" }, h("label", { for: "client-secret" }, "Client secret"), secret),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    status.className = "";
    status.textContent = "";
    try {
      await sessions.signIn(clientId.value.trim(), secret.value);
      secret.value = "";
      await startShell(await sessions.current());
    } catch (error) {
      status.className = "error";
      status.textContent = error.status === 401 ? "Wrong client id or secret." : error.message;
      secret.focus();
      secret.select();
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(h("div", { class: "page narrow" }, form));
  clientId.focus();
}

window.addEventListener("session-expired", () => {
  if (state.session) signInPage(EXPIRED);
});
window.addEventListener("hashchange", () => route());
document.getElementById("group-picker").addEventListener("change", (event) => {
  pickGroup(event.target.value);
  route();
});
document.getElementById("sign-out").addEventListener("click", async () => {
  await sessions.signOut();
  signInPage("You are signed out.");
});
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault(); // the hash is the router's
  main.focus();
});

(async () => {
  try {
    await startShell(await sessions.current());
  } catch (error) {
    const lapsed = error instanceof ApiError && /expired/i.test(error.message);
    signInPage(lapsed ? EXPIRED : "");
  }
})();
