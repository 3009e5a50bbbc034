// The failures dashboard: a static page over the log API's JSON (GET /logs, /logs/{id}, /stats).
// Everything the API returns is put in the page as text (never as HTML), and the page loads
// nothing from elsewhere: the Content-Security-Policy allows only this origin.
"use strict";

const TOKEN_KEY = "userprov.logApiToken";
const ATTENTION = ["failed", "dead_lettered", "held"];
const PAGE = 50;

const $ = (id) => document.getElementById(id);
const filters = { status: "attention", app: "", user: "" };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(message + " (HTTP " + response.status + ")");
  }
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== undefined && value !== null) search.set(key, value);
  }
  return search.toString();
}

function showAuth(message) {
  $("layout").hidden = true;
  $("auth").hidden = false;
  $("auth-error").textContent = message || "";
  $("token").focus();
}

function showError(error) {
  if (error instanceof Unauthorized) {
    const had = sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    showAuth(had ? "That token was refused." : "");
    return;
  }
  $("error").hidden = false;
  $("error").textContent = String(error.message || error);
}

function shortTime(iso) {
  return iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
}

function summaryOf(entry) {
  if (entry.error) return entry.error.code + ": " + entry.error.message;
  return entry.reason || "";
}

function entryRow(entry) {
  const row = el("tr", undefined, "entry status-" + entry.status);
  row.dataset.id = entry.id;
  row.dataset.operation = entry.operation;
  row.dataset.status = entry.status;
  row.tabIndex = 0;
  row.append(
    el("td", shortTime(entry.time), "time"),
    el("td", entry.app, "app"),
    el("td", entry.username || entry.user_id, "user"),
    el("td", entry.operation, "operation"),
  );
  const status = el("td", undefined, "status");
  status.append(el("span", entry.status.replace("_", " "), "badge " + entry.status));
  row.append(status, el("td", summaryOf(entry), "summary"));
  row.addEventListener("click", () => openDetail(entry.id));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") openDetail(entry.id);
  });
  return row;
}

function table(entries) {
  const t = el("table", undefined, "entries");
  const head = el("tr");
  for (const name of ["Time", "App", "User", "Operation", "Status", "Reason or error"]) {
    head.append(el("th", name));
  }
  t.append(el("thead"));
  t.tHead.append(head);
  const body = el("tbody");
  for (const entry of entries) body.append(entryRow(entry));
  t.append(body);
  return t;
}

function section(id, title, entries, more) {
  const box = el("section", undefined, "list");
  box.id = id;
  box.append(el("h2", title + " (" + entries.length + (more ? "+" : "") + ")"));
  if (entries.length === 0) {
    box.append(el("p", "No entries.", "empty"));
  } else {
    box.append(table(entries));
  }
  return box;
}

// One list, newest first, with a "More" button while the API has further pages.
async function pagedSection(id, title, params) {
  const page = await api("logs?" + query({ ...params, limit: PAGE }));
  const box = section(id, title, page.entries, page.next_cursor);
  let cursor = page.next_cursor;
  if (cursor) {
    const more = el("button", "More", "more");
    more.type = "button";
    more.addEventListener("click", async () => {
      try {
        const next = await api("logs?" + query({ ...params, limit: PAGE, cursor }));
        const body = box.querySelector("tbody");
        for (const entry of next.entries) body.append(entryRow(entry));
        cursor = next.next_cursor;
        if (!cursor) more.remove();
      } catch (error) {
        showError(error);
      }
    });
    box.append(more);
  }
  return box;
}

async function attentionSection(common) {
  const pages = await Promise.all(
    ATTENTION.map((status) => api("logs?" + query({ ...common, status, limit: PAGE }))),
  );
  const entries = pages.flatMap((p) => p.entries).sort((a, b) => (a.id < b.id ? 1 : -1));
  const more = pages.some((p) => p.next_cursor);
  return section("attention", "Failures and holds", entries, more);
}

async function load() {
  $("error").hidden = true;
  const common = { app: filters.app, user: filters.user };
  for (const button of document.querySelectorAll("#status-filter button")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === filters.status));
  }
  location.hash = query(filters);
  try {
    const boxes = [];
    if (filters.status === "attention") {
      boxes.push(await attentionSection(common));
      boxes.push(await pagedSection("recent", "Recent activity", common));
    } else {
      const status = filters.status === "all" ? "" : filters.status;
      const title = status ? "Status " + status.replace("_", " ") : "All entries";
      boxes.push(await pagedSection("results", title, { ...common, status }));
    }
    $("lists").replaceChildren(...boxes);
    $("auth").hidden = true;
    $("layout").hidden = false;
    document.body.dataset.loaded = "true";
  } catch (error) {
    showError(error);
  }
}

async function loadSummary() {
  try {
    const stats = await api("stats");
    const parts = Object.entries(stats.by_status).map(([s, n]) => n + " " + s.replace("_", " "));
    $("summary").textContent =
      "Last 24 hours: " + stats.total + " entries" + (parts.length ? " · " + parts.join(" · ") : "");
    const apps = $("apps");
    apps.replaceChildren(...Object.keys(stats.by_app).map((name) => {
      const option = el("option");
      option.value = name;
      return option;
    }));
  } catch (error) {
    if (error instanceof Unauthorized) return; // load() asks for the token
    $("summary").textContent = "Statistics unavailable: " + error.message;
  }
}

function fact(list, name, value) {
  if (value === undefined || value === null || value === "") return;
  list.append(el("dt", name), el("dd", value));
}

function showBox(id, filled) {
  $(id).hidden = !filled;
}

function cell(value, missing) {
  if (value === undefined || value === null) return el("td", missing, "none");
  return el("td", typeof value === "string" ? value : JSON.stringify(value));
}

async function openDetail(id) {
  let entry;
  try {
    entry = await api("logs/" + encodeURIComponent(id));
  } catch (error) {
    showError(error);
    return;
  }
  const detail = $("detail");
  detail.dataset.id = entry.id;
  $("detail-title").textContent =
    entry.operation + " · " + entry.status.replace("_", " ") + " · " + (entry.username || entry.user_id);
  const facts = $("detail-facts");
  facts.replaceChildren();
  fact(facts, "Time", shortTime(entry.time));
  fact(facts, "App", entry.app);
  fact(facts, "User id", entry.user_id);
  fact(facts, "Target account", entry.target_id);
  fact(facts, "Attempt", entry.attempt);
  fact(facts, "HTTP status", entry.http_status);
  fact(facts, "Duration", entry.duration_ms + " ms");
  fact(facts, "Source", entry.source);
  fact(facts, "Event id", entry.event_id);
  fact(facts, "Correlation id", entry.correlation_id);
  fact(facts, "Log entry id", entry.id);

  $("detail-reason").textContent = entry.reason || "";
  showBox("detail-reason-box", Boolean(entry.reason));
  $("detail-error").textContent = entry.error
    ? entry.error.class + " · " + entry.error.code + ": " + entry.error.message
    : "";
  showBox("detail-error-box", Boolean(entry.error));

  const changes = entry.changes || [];
  const rows = changes.map((change) => {
    const row = el("tr");
    row.append(el("td", change.attribute, "attribute"));
    if (change.redacted) {
      row.append(el("td", "(hidden)", "none"), el("td", "(hidden: sensitive)", "none"));
    } else {
      row.append(cell(change.old, "—"), cell(change.new, "(removed)"));
    }
    return row;
  });
  $("detail-changes").tBodies[0].replaceChildren(...rows);
  showBox("detail-changes-box", rows.length > 0);

  const groups = entry.groups;
  const groupText = groups
    ? [groups.added.length ? "added to " + groups.added.join(", ") : "",
       groups.removed.length ? "removed from " + groups.removed.join(", ") : ""]
        .filter(Boolean).join("; ")
    : "";
  $("detail-groups").textContent = groupText;
  showBox("detail-groups-box", Boolean(groupText));

  $("detail-request").textContent = entry.request ? JSON.stringify(entry.request, null, 2) : "";
  showBox("detail-request-box", Boolean(entry.request));
  $("detail-response").textContent = entry.response || "";
  showBox("detail-response-box", Boolean(entry.response));

  for (const row of document.querySelectorAll("tr.entry")) {
    row.classList.toggle("selected", row.dataset.id === entry.id);
  }
  detail.hidden = false;
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("status")) filters.status = params.get("status");
  filters.app = params.get("app") || "";
  filters.user = params.get("user") || "";
  $("app").value = filters.app;
  $("user").value = filters.user;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("#status-filter button")) {
    button.addEventListener("click", () => {
      filters.status = button.dataset.status;
      filters.app = $("app").value.trim();
      filters.user = $("user").value.trim();
      load();
    });
  }
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filters.app = $("app").value.trim();
    filters.user = $("user").value.trim();
    load();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    loadSummary();
    load();
  });
  $("close-detail").addEventListener("click", () => {
    $("detail").hidden = true;
  });
  readHash();
  loadSummary();
  load();
});
