// #/events: the group's events as they happen (GET /v2/events/stream: type, subject, time, the CloudEvent's
// JSON on expand; pause; filter by type), and the group's webhook subscriptions with their last deliveries.
import { h, table, emptyState, errorBox, time } from "../ui.js";

const KEPT = 200;
const PREFIX = "io.zeroserve.";

function short(type) {
  return String(type || "").replace(PREFIX, "");
}

function eventItem(event) {
  const summary = h("summary", {},
    h("span", { class: "event-type" }, short(event.type)), " ",
    h("span", { class: "event-subject" }, event.subject || (event.data && event.data.id) || ""), " ",
    time(event.time), event.data && event.data.status ? [" ", h("span", { class: "muted" }, event.data.status)] : null);
  return h("li", { class: "event" }, h("details", {}, summary, h("pre", { tabindex: "0" }, JSON.stringify(event, null, 2))));
}

async function subscriptionsSection(api) {
  const section = h("section", { "aria-labelledby": "subs-title" }, h("h2", { id: "subs-title" }, "Webhook subscriptions"));
  const holder = h("div");
  const refresh = h("button", { type: "button" }, "Refresh");
  section.append(refresh, holder);
  async function load() {
    holder.setAttribute("aria-busy", "true");
    try {
      const subscriptions = (await api.get("/v2/subscriptions")).resources || [];
      holder.replaceChildren(subscriptions.length ? h("div", {}, subscriptions.map((s) => h("article", { class: "subscription" },
        h("h3", {}, s.description || s.id),
        h("p", {}, h("code", {}, s.url), " · ", (s.eventTypes || []).map(short).join(", ")),
        table({
          caption: `Last deliveries of ${s.id}`,
          empty: "No deliveries yet.",
          rows: s.lastDeliveries || [],
          columns: [
            { label: "When", value: (d) => time(d.at) },
            { label: "Event", value: (d) => h("span", {}, short(d.eventType), " ", h("code", {}, d.eventId)) },
            { label: "Outcome", value: (d) => h("span", { class: d.delivered ? "ok" : "failed" }, d.delivered ? "delivered" : "failed") },
            { label: "HTTP status or error", value: (d) => (d.status ? String(d.status) : "") + (d.error && !d.status ? d.error : "") },
            { label: "Attempts", value: (d) => String(d.attempts) },
            { label: "Duration", value: (d) => `${d.durationMs} ms` },
          ],
        }))))
        : emptyState("No webhook subscriptions in this group. Create one with POST /v2/subscriptions or `zeroserve subscriptions create`."));
    } catch (error) {
      holder.replaceChildren(errorBox(error));
    }
    holder.removeAttribute("aria-busy");
  }
  refresh.addEventListener("click", load);
  await load();
  return section;
}

export default {
  title: "Events",
  async render(root, ctx) {
    const { api, group, signal } = ctx;
    root.append(h("h1", {}, "Events"));
    const live = h("section", { "aria-labelledby": "live-title" }, h("h2", { id: "live-title" }, `Live events of group ${group}`));
    root.append(live);

    let paused = false;
    const held = [];
    const events = [];
    const typeFilter = h("select", { id: "event-type-filter" }, h("option", { value: "" }, "every type"));
    const knownTypes = new Set();
    const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
    const state = h("span", { class: "muted", "aria-live": "polite" }, "Connecting…");
    const list = h("ol", { class: "events", "aria-label": "Events, newest first", reversed: true });
    const empty = emptyState("Waiting for events… Register a model or deploy one and its events appear here.");
    live.append(h("div", { class: "filters" }, h("label", { for: "event-type-filter" }, "Type"), typeFilter, pause, " ", state), empty, list);

    function visible(event) {
      return !typeFilter.value || event.type === typeFilter.value;
    }
    function draw() {
      const shown = events.filter(visible);
      empty.hidden = shown.length > 0;
      if (!shown.length && events.length) empty.textContent = "No event of this type yet.";
      list.replaceChildren(...shown.map(eventItem));
    }
    function add(event) {
      if (!knownTypes.has(event.type)) {
        knownTypes.add(event.type);
        typeFilter.append(h("option", { value: event.type }, short(event.type)));
      }
      events.unshift(event);
      if (events.length > KEPT) events.length = KEPT;
      if (!visible(event)) return;
      empty.hidden = true;
      list.prepend(eventItem(event));
      while (list.children.length > KEPT) list.lastChild.remove();
    }
    typeFilter.addEventListener("change", draw);
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
      if (!paused) {
        held.splice(0).forEach(add);
        state.textContent = "Live.";
      } else {
        state.textContent = "Paused: new events are held until you resume.";
      }
    });

    api.stream("/v2/events/stream", (message) => {
      const event = message.data && typeof message.data === "object" ? message.data : { type: message.event, data: message.data };
      if (paused) {
        held.push(event);
        state.textContent = `Paused: ${held.length} new event${held.length === 1 ? "" : "s"} held until you resume.`;
      } else {
        add(event);
      }
    }, signal).catch((error) => {
      if (!signal.aborted) { state.textContent = ""; live.append(errorBox(error)); }
    });
    state.textContent = "Live.";

    root.append(await subscriptionsSection(api));
  },
};
