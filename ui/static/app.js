// Squall dashboard: a hash-routed page over the REST API (no build step, no dependencies).
//   #/                               cluster: summary, nimbuses, supervisors, topologies
//   #/topology/<id>                  topology: stats, graph, throughput, components, errors
//   #/topology/<id>/component/<c>    one component: windows, streams, executors, metrics, errors
"use strict";

const REFRESH_MS = 2000;
const SECRET_KEY = "squall.secret";
// The server's bounds (topology.builder, ui.server), so the dialogs refuse what it would.
const MAX_WAIT_SECS = 86400, MAX_WORKERS = 256, MAX_PARALLELISM = 4096;
const SVG_NS = "http://www.w3.org/2000/svg";

const app = { timer: null, seq: 0, window: "600", mode: "" };
// Storm's windows: the workers report the last 10 minutes and all time, the server keeps 3 h and 1 day.
const WINDOWS = [["600", "10 min"], ["10800", "3 h"], ["86400", "1 day"], [":all-time", "All time"]];

// --- small DOM helpers (no innerHTML: every value is text) -------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const $ = (id) => document.getElementById(id);

// --- formatting ---------------------------------------------------------------------------------

function fmtInt(n) {
  return n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US");
}

function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number.isInteger(n) ? n.toLocaleString("en-US") : Number(n.toPrecision(4)).toLocaleString("en-US");
}

function fmtShort(n) {
  if (n === null || n === undefined) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
  if (a >= 100) return Math.round(n).toString();
  return (Math.round(n * 10) / 10).toString();
}

function fmtMs(ms) {
  if (!ms) return "–";
  return ms >= 100 ? ms.toFixed(0) + " ms" : ms.toFixed(ms >= 10 ? 1 : 3) + " ms";
}

function fmtBytes(b) {
  if (!b) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + units[i];
}

function ago(secs) {
  if (secs === null || secs === undefined) return "";
  if (secs < 60) return secs + "s ago";
  if (secs < 3600) return Math.floor(secs / 60) + "m ago";
  return Math.floor(secs / 3600) + "h ago";
}

function badge(status) {
  return h("span", { class: "badge " + String(status || "").toLowerCase(), text: status || "?" });
}

function logCell(link) {
  if (!link) return h("td", { class: "muted", text: "–", title: "this worker's supervisor serves no logs" });
  return h("td", {}, h("a", { href: link, target: "_blank", rel: "noopener", class: "log-link", text: "log" }));
}

// The one line of an error, and its whole traceback folded under it.
function traceback(line, trace) {
  if (!trace || trace === line) return h("div", { class: "mono small error-text", text: line });
  return h("details", { class: "traceback" }, h("summary", { class: "mono small error-text", text: line }),
    h("pre", { class: "mono small", text: trace }));
}

function windowToggle() {
  return h("div", { class: "toggle" }, WINDOWS.map(([w, label]) =>
    h("button", { class: "btn small" + (w === app.window ? " on" : ""), type: "button", "data-window": w,
      onclick: () => { app.window = w; refresh(); }, text: label })));
}

function capacityCell(c) {
  const level = c >= 0.8 ? "hot" : c >= 0.5 ? "warm" : "ok";
  const bar = h("span", { class: "capbar " + level },
    h("span", { class: "capfill w" + Math.min(10, Math.round(c * 10)) }));
  return h("td", { class: "num" }, bar, " ", c.toFixed(3));
}

// --- API ----------------------------------------------------------------------------------------

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, data.errorMessage || r.statusText);
  return data;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function post(path, body) {
  const secret = await getSecret();
  if (secret === null) return null;
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Squall-Secret": secret },
    body: JSON.stringify(body || {}),
  });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) sessionStorage.removeItem(SECRET_KEY);
  if (!r.ok) throw new ApiError(r.status, data.errorMessage || r.statusText);
  return data;
}

// --- dialogs and toasts -------------------------------------------------------------------------

function getSecret() {
  const known = sessionStorage.getItem(SECRET_KEY);
  if (known) return Promise.resolve(known);
  const dialog = $("secret-dialog");
  $("secret-input").value = "";
  $("secret-error").textContent = "";
  return new Promise((resolve) => {
    const done = (value) => {
      $("secret-form").onsubmit = null;
      $("secret-cancel").onclick = null;
      dialog.close();
      resolve(value);
    };
    $("secret-form").onsubmit = (ev) => {
      ev.preventDefault();
      const value = $("secret-input").value;
      sessionStorage.setItem(SECRET_KEY, value);
      done(value);
    };
    $("secret-cancel").onclick = () => done(null);
    dialog.oncancel = () => done(null);
    dialog.showModal();
  });
}

function confirmAction(title, text, fields, okLabel, danger) {
  const inputs = fields.map((f) => h("label", {}, f.label,
    h("input", { id: "field-" + f.name, name: f.name, type: "number", min: f.min, max: f.max,
                 step: f.step || 1, value: f.value, required: true })));
  return openDialog(title, text, inputs, okLabel, danger, () => {
    const values = {};
    for (const f of fields) values[f.name] = Number($("field-" + f.name).value);
    return values;
  });
}

// The action dialog with `children` as its fields; resolves to read() on OK, null on cancel.
function openDialog(title, text, children, okLabel, danger, read) {
  const dialog = $("action-dialog");
  $("action-title").textContent = title;
  $("action-text").textContent = text;
  $("action-fields").replaceChildren(...children);
  const ok = $("action-ok");
  ok.textContent = okLabel;
  ok.className = "btn " + (danger ? "danger" : "primary");
  return new Promise((resolve) => {
    const done = (value) => {
      $("action-form").onsubmit = null;
      dialog.close();
      resolve(value);
    };
    $("action-form").onsubmit = (ev) => {
      ev.preventDefault();
      done(read());
    };
    $("action-cancel").onclick = () => done(null);
    dialog.oncancel = () => done(null);
    dialog.showModal();
  });
}

function toast(message, kind) {
  const el = h("div", { class: "toast " + (kind || "info"), role: "status", text: message });
  $("toasts").append(el);
  setTimeout(() => el.remove(), 5000);
}

// --- routing and refresh ------------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "topology" && parts[1]) {
    if (parts[2] === "component" && parts[3]) return { view: "component", id: parts[1], c: parts[3] };
    return { view: "topology", id: parts[1] };
  }
  return { view: "cluster" };
}

async function refresh() {
  clearTimeout(app.timer);
  const seq = ++app.seq;
  const r = route();
  try {
    let node;
    if (r.view === "topology") node = await topologyView(r.id);
    else if (r.view === "component") node = await componentView(r.id, r.c);
    else node = await clusterView();
    if (seq !== app.seq) return; // a newer refresh (navigation) won
    $("view").replaceChildren(node);
    setLive(true);
  } catch (e) {
    if (seq !== app.seq) return;
    setLive(false, e.message);
  }
  app.timer = setTimeout(refresh, REFRESH_MS);
}

function setLive(ok, why) {
  const el = $("live");
  el.className = "live " + (ok ? "on" : "off");
  el.textContent = ok ? "live" : "offline";
  el.title = ok ? "refreshes every 2 s" : why || "";
}

function crumbs(...items) {
  $("crumbs").replaceChildren(...items.flatMap((it, i) => [
    i ? h("span", { class: "sep", text: "/" }) : null,
    it.href ? h("a", { href: it.href, text: it.text }) : h("span", { text: it.text }),
  ]).filter(Boolean));
}

function card(label, value, sub) {
  return h("div", { class: "card stat" }, h("div", { class: "label", text: label }),
    h("div", { class: "value", text: value }), sub ? h("div", { class: "sub", text: sub }) : null);
}

function panel(title, ...children) {
  return h("section", { class: "panel" }, h("h2", { text: title }), ...children);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted empty", text: empty || "None." });
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) =>
      h("th", { class: x.startsWith("#") ? "num" : "", text: x.replace(/^#/, "") })))),
    h("tbody", {}, rows)));
}

const num = (v) => h("td", { class: "num", text: fmtInt(v) });
const td = (v) => h("td", { text: v === null || v === undefined ? "–" : v });

// --- cluster view -------------------------------------------------------------------------------

async function clusterView() {
  const [cl, nim, sup, top] = await Promise.all([
    api("/api/v1/cluster/summary"), api("/api/v1/nimbus/summary"),
    api("/api/v1/supervisor/summary"), api("/api/v1/topology/summary")]);
  app.mode = cl.mode;
  $("mode").textContent = cl.mode === "local" ? "local mode" : "";
  crumbs({ text: "Cluster" });
  const leader = nim.nimbuses.find((n) => n.status === "Leader");
  const cards = h("div", { class: "cards" },
    card("Topologies", fmtInt(cl.topologies)),
    card("Supervisors", fmtInt(cl.supervisors), cl.supervisorsLost ? `${cl.supervisorsLost} lost` : ""),
    card("Slots used", `${cl.slotsUsed} / ${cl.slotsTotal}`, `${cl.slotsFree} free`),
    card("Executors", fmtInt(cl.executorsTotal), `${fmtInt(cl.tasksTotal)} tasks`),
    card("Nimbus leader", leader ? `${leader.host}:${leader.port}` : cl.mode === "local" ? "local" : "none",
      cl.nimbusUptime ? "up " + cl.nimbusUptime : ""));
  const topRows = top.topologies.map((t) => h("tr", {},
    h("td", {}, h("a", { href: "#/topology/" + encodeURIComponent(t.id), class: "topology-link", text: t.name })),
    h("td", {}, badge(t.status)), td(t.uptime), num(t.workersTotal), num(t.executorsTotal),
    num(t.tasksTotal), td(t.owner), h("td", { class: "mono small", text: t.id })));
  const nimRows = nim.nimbuses.map((n) => h("tr", {}, td(n.host), num(n.port),
    h("td", {}, h("span", { class: "badge " + (n.status === "Leader" ? "active" : "inactive"), text: n.status })),
    td(n.version), td(n.nimbusUpTime)));
  const supRows = sup.supervisors.map((x) => h("tr", { "data-supervisor": x.id },
    h("td", { class: "mono small", text: x.id }), td(x.host),
    h("td", {}, h("span", { class: "badge " + x.status, text: x.status,
      title: x.status === "lost" ? `no heartbeat for ${x.silentSecs} s` : "heartbeating" })),
    td(x.uptime || "–"),
    h("td", {}, h("div", { class: "slots" }, x.slots.map((sl) => h("span", {
      class: "slot " + (sl.topologyId ? "used" : "free"),
      title: sl.topologyId ? `${sl.port}: ${sl.topologyName}` : `${sl.port}: free`,
      text: sl.port })))),
    h("td", { class: "num", text: `${x.slotsUsed} / ${x.slotsTotal}` })));
  return h("div", {}, cards,
    panel("Topologies", table(["Name", "Status", "Uptime", "#Workers", "#Executors", "#Tasks", "Owner", "Id"],
      topRows, "No topologies are running.")),
    h("div", { class: "grid2" },
      panel("Nimbus", table(["Host", "#Port", "Status", "Version", "Uptime"], nimRows,
        cl.mode === "local" ? "Local mode: no nimbus, the local cluster schedules." : "No nimbus registered.")),
      panel("Supervisors", table(["Id", "Host", "Status", "Uptime", "Slots", "#Used"], supRows, "No supervisors."))));
}

// --- topology view ------------------------------------------------------------------------------

async function topologyView(id) {
  const summary = await api("/api/v1/topology/summary");
  if (!summary.topologies.some((t) => t.id === id)) return goneView(id);
  const q = "?window=" + encodeURIComponent(app.window);
  const [t, live, logs] = await Promise.all([
    api("/api/v1/topology/" + encodeURIComponent(id) + q),
    api("/api/v1/topology/" + encodeURIComponent(id) + "/live"),
    api("/api/v1/topology/" + encodeURIComponent(id) + "/logconfig")]);
  crumbs({ text: "Cluster", href: "#/" }, { text: t.name });
  const stats = t.topologyStats.find((x) => x.window === app.window) || t.topologyStats[0];
  const last = live.samples[live.samples.length - 1] || {};
  const header = h("div", { class: "titlebar" },
    h("div", {}, h("h1", {}, t.name, " ", badge(t.status)),
      h("div", { class: "muted small" }, `${t.id} · up ${t.uptime} · ${t.workersTotal} workers · `
        + `${t.executorsTotal} executors · owner ${t.owner || "?"}`)),
    actionButtons(t));
  const cards = h("div", { class: "cards" },
    card("Throughput", fmtShort(last.executed || 0) + "/s", "bolt tuples executed"),
    card("Emitted", fmtShort(stats.emitted), stats.windowPretty),
    card("Acked", fmtShort(stats.acked), `${fmtShort(last.acked || 0)}/s`),
    card("Failed", fmtShort(stats.failed), `${fmtShort(last.failed || 0)}/s`),
    card("Complete latency", fmtMs(stats.completeLatency), stats.windowPretty),
    t.checkpoint ? checkpointCard(t.checkpoint) : null);
  return h("div", { class: "topology", "data-topology": t.id }, header, cards,
    panel("Topology graph · tuples/s on the edges", graph(live, t.id)),
    h("div", { class: "grid-chart" },
      panel("Throughput (tuples/s)", chart(live.samples, live.spanSeconds)),
      panel("Recent errors", errorList(t))),
    h("div", { class: "panel-head" }, h("span", { class: "muted", text: "Component stats over" }), windowToggle()),
    panel("Spouts", spoutTable(t)),
    panel("Bolts", boltTable(t)),
    panel("Workers", workerTable(t)),
    logLevelPanel(t, logs));
}

// The last committed checkpoint of a stateful topology (DESIGN §8: txid, time, duration).
function checkpointCard(c) {
  const age = typeof c.time === "number" ? ago(Math.max(0, Math.round(Date.now() / 1000 - c.time))) : "";
  const took = typeof c.duration === "number" ? "took " + fmtMs(c.duration * 1000) : "";
  const failed = c.failed ? `${fmtInt(c.failed)} failed` : "";
  const el = card("Last checkpoint", "txid " + fmtInt(c.txid), [age, took, failed].filter(Boolean).join(" · "));
  el.setAttribute("data-checkpoint", String(c.txid));
  return el;
}

function watermarkText(mark) {
  if (typeof mark !== "number") return "none yet";
  return mark > 1e9 ? new Date(mark * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : fmtNum(mark);
}

// What a windowed bolt, a stateful component or a replayable spout reports beyond its counts.
function progressPanel(x) {
  const rows = [];
  const row = (what, value) => rows.push(h("tr", { "data-progress": what }, td(what), td(value)));
  if (x.windowing) {
    row("Window", x.windowing.spec);
    row("Watermark (lowest of its tasks)", watermarkText(x.windowing.watermark));
    row("Late tuples", fmtInt(x.windowing.late));
  }
  if (x.checkpoint) {
    row("Last committed checkpoint", "txid " + fmtInt(x.checkpoint.txid)
      + (typeof x.checkpoint.time === "number" ? " · " + new Date(x.checkpoint.time * 1000).toLocaleString() : "")
      + (typeof x.checkpoint.duration === "number" ? " · took " + fmtMs(x.checkpoint.duration * 1000) : ""));
    row("Failed checkpoints", fmtInt(x.checkpoint.failed));
  }
  if (x.source) {
    row("Source", x.source.kind);
    row("Behind (all tasks)", fmtInt(x.source.behind));
    for (const t of x.source.tasks || []) {
      row(`Task ${t.task}`, `${t.name} at ${JSON.stringify(t.offset)}` + (t.behind === null ? "" : `, ${fmtInt(t.behind)} behind`));
    }
  }
  if (!rows.length) return null;
  return panel("Progress", table(["What", "Value"], rows));
}

function goneView(id) {
  crumbs({ text: "Cluster", href: "#/" }, { text: id });
  return h("div", { class: "panel gone" }, h("h2", { text: "Topology not running" }),
    h("p", { class: "muted", text: `Topology ${id} is not (or no longer) running.` }),
    h("a", { href: "#/", class: "btn", text: "Back to the cluster" }));
}

function compLink(id, c) {
  return h("a", { href: `#/topology/${encodeURIComponent(id)}/component/${encodeURIComponent(c)}`, text: c });
}

function errorCell(x) {
  if (!x.lastError) return h("td", { class: "muted", text: "" });
  return h("td", { class: "error-text small", title: x.lastErrorTraceback || `${x.errorHost}:${x.errorPort}` },
    `${x.lastError} (${ago(x.errorLapsedSecs)})`);
}

function spoutTable(t) {
  const rows = t.spouts.map((x) => h("tr", { "data-component": x.spoutId },
    h("td", {}, compLink(t.id, x.spoutId)), num(x.executors), num(x.tasks), num(x.emitted),
    num(x.transferred), h("td", { class: "num", text: fmtMs(x.completeLatency) }),
    num(x.acked), num(x.failed), errorCell(x)));
  return table(["Id", "#Executors", "#Tasks", "#Emitted", "#Transferred", "#Complete latency",
    "#Acked", "#Failed", "Last error"], rows, "No spouts.");
}

function boltTable(t) {
  const rows = t.bolts.map((x) => h("tr", { "data-component": x.boltId },
    h("td", {}, compLink(t.id, x.boltId)), num(x.executors), num(x.tasks), num(x.emitted),
    num(x.transferred), num(x.executed), capacityCell(x.capacity),
    h("td", { class: "num", text: fmtMs(x.executeLatency) }),
    h("td", { class: "num", text: fmtMs(x.processLatency) }),
    num(x.acked), num(x.failed), errorCell(x)));
  return table(["Id", "#Executors", "#Tasks", "#Emitted", "#Transferred", "#Executed", "#Capacity",
    "#Execute latency", "#Process latency", "#Acked", "#Failed", "Last error"], rows, "No bolts.");
}

function workerTable(t) {
  const rows = t.workers.map((w) => h("tr", {}, td(`${w.host}:${w.port}`), td(w.uptime || "–"),
    num(w.executorsTotal), h("td", { class: "num", text: fmtBytes(w.rssBytes) }), num(w.queued),
    h("td", { class: "small", text: Object.entries(w.componentNumTasks).map(([c, n]) => `${c}×${n}`).join(", ") }),
    logCell(w.workerLogLink)));
  return table(["Worker", "Uptime", "#Executors", "#Memory", "#Queued", "Tasks", "Log"], rows, "No workers assigned.");
}

function errorList(t) {
  const errors = t.recentErrors || [];
  if (!errors.length) return h("p", { class: "muted empty ok-text", text: "No errors reported." });
  return h("ul", { class: "errors" }, errors.map((e) => h("li", {},
    h("div", { class: "error-head" }, h("strong", { text: e.component }),
      h("span", { class: "muted small", text: ` task ${e.errorTask} · ${e.errorHost}:${e.errorPort} · `
        + `${new Date(e.errorTime * 1000).toLocaleTimeString()} (${ago(e.errorLapsedSecs)})` }),
      e.errorWorkerLogLink ? h("a", { href: e.errorWorkerLogLink, target: "_blank", rel: "noopener", class: "small", text: " log" }) : null),
    traceback(e.error, e.errorTraceback))));
}

// --- actions --------------------------------------------------------------------------------------

function actionButtons(t) {
  const active = t.status === "ACTIVE";
  const busy = t.status === "KILLED" || t.status === "REBALANCING";
  return h("div", { class: "actions" },
    h("button", { class: "btn", id: "btn-activate", type: "button", disabled: active || busy,
      onclick: () => runAction(t, "activate"), text: "Activate" }),
    h("button", { class: "btn", id: "btn-deactivate", type: "button", disabled: !active || busy,
      onclick: () => runAction(t, "deactivate"), text: "Deactivate" }),
    h("button", { class: "btn", id: "btn-rebalance", type: "button", disabled: busy || app.mode === "local",
      title: app.mode === "local" ? "not available in local mode" : null,
      onclick: () => rebalance(t), text: "Rebalance" }),
    h("button", { class: "btn danger", id: "btn-kill", type: "button", disabled: t.status === "KILLED",
      onclick: () => kill(t), text: "Kill" }));
}

async function runAction(t, action, suffix, body) {
  const path = `/api/v1/topology/${encodeURIComponent(t.id)}/${action}${suffix || ""}`;
  try {
    const r = await post(path, body);
    if (r) toast(`${action} ${t.name}: ${r.status}`, "ok");
  } catch (e) {
    toast(`${action} ${t.name} failed: ${e.message}`, "bad");
  }
  refresh();
}

async function kill(t) {
  const v = await confirmAction(`Kill ${t.name}?`,
    "The spouts are deactivated, then after the wait the topology's workers are stopped.",
    [{ name: "wait", label: "Wait (seconds)", value: t.msgTimeout, min: 0, max: MAX_WAIT_SECS }],
    "Kill", true);
  if (v) runAction(t, "kill", "/" + v.wait);
}

async function rebalance(t) {
  const comps = [...t.spouts.map((x) => [x.spoutId, x.executors]), ...t.bolts.map((x) => [x.boltId, x.executors])];
  const v = await confirmAction(`Rebalance ${t.name}`, "Redistribute the topology over workers and change parallelism.",
    [{ name: "wait", label: "Wait (seconds)", value: t.msgTimeout, min: 0, max: MAX_WAIT_SECS },
     { name: "workers", label: "Workers", value: t.workersTotal, min: 1, max: MAX_WORKERS },
     ...comps.map(([c, n]) => ({ name: "c:" + c, label: c, value: n, min: 1, max: MAX_PARALLELISM }))],
    "Rebalance", false);
  if (!v) return;
  const executors = {};
  for (const [c, n] of comps) if (v["c:" + c] !== n) executors[c] = v["c:" + c];
  runAction(t, "rebalance", "/" + v.wait, { rebalanceOptions: { numWorkers: v.workers, executors } });
}

// --- log levels (squall set-log-level; Storm's "Change Log Level") -------------------------------

const LOG_LEVELS = ["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"];

function logLevelPanel(t, config) {
  const rows = Object.entries(config.namedLoggerLevels || {}).map(([name, x]) => h("tr", { "data-logger": name },
    h("td", { class: "mono", text: name }), td(x.target_level),
    td(x.timeout_epoch ? `${new Date(x.timeout_epoch).toLocaleTimeString()} (${x.timeout} s left)` : "until cleared"),
    h("td", {}, h("button", { class: "btn small", type: "button", "data-clear": name, text: "Clear",
      onclick: () => postLogLevels(t, { [name]: { target_level: "CLEAR" } }) }))));
  return h("section", { class: "panel" }, h("h2", { text: "Log levels" }),
    table(["Logger", "Level", "Until", ""], rows, "Every logger is at its workers' own level."),
    h("div", { class: "buttons" }, h("button", { class: "btn", id: "btn-log-level", type: "button",
      disabled: t.status === "KILLED", onclick: () => changeLogLevel(t), text: "Change log level" })));
}

async function changeLogLevel(t) {
  const v = await openDialog(`Change a log level of ${t.name}`,
    "Every worker of the topology sets the logger (ROOT: the root logger) to the level, and puts "
    + "it back to its own level after the timeout (0: when cleared).",
    [h("label", {}, "Logger", h("input", { id: "field-logger", type: "text", value: "ROOT", required: true,
        pattern: "[A-Za-z0-9_.$\\-]{1,200}", autocomplete: "off" })),
     h("label", {}, "Level", h("select", { id: "field-level" },
        LOG_LEVELS.map((l) => h("option", { value: l, text: l, selected: l === "DEBUG" })))),
     h("label", {}, "Timeout (seconds)", h("input", { id: "field-timeout", type: "number", min: 0,
        max: MAX_WAIT_SECS, step: 1, value: 60, required: true }))],
    "Set", false, () => ({ logger: $("field-logger").value.trim(), level: $("field-level").value,
                           timeout: Number($("field-timeout").value) }));
  if (v) postLogLevels(t, { [v.logger]: { target_level: v.level, timeout: v.timeout } });
}

async function postLogLevels(t, named) {
  try {
    const r = await post(`/api/v1/topology/${encodeURIComponent(t.id)}/logconfig`, { namedLoggerLevels: named });
    if (r) toast(`log levels of ${t.name}: ${Object.entries(r.namedLoggerLevels)
      .map(([n, x]) => `${n}=${x.target_level}`).join(", ") || "every logger at its own level"}`, "ok");
  } catch (e) {
    toast(`log levels of ${t.name}: ${e.message}`, "bad");
  }
  refresh();
}

// --- graph: layered DAG layout in SVG -------------------------------------------------------------

function layers(nodes, edges) {
  const depth = Object.fromEntries(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {       // longest path; the topology is acyclic
    for (const e of edges) {
      if (e.source in depth && depth[e.target] < depth[e.source] + 1) depth[e.target] = depth[e.source] + 1;
    }
  }
  const out = [];
  for (const n of nodes) (out[depth[n.id]] = out[depth[n.id]] || []).push(n);
  return out.filter(Boolean);
}

function graph(live, id) {
  const W = 170, H = 62, GX = 110, GY = 26, PAD = 20;
  const cols = layers(live.nodes, live.edges);
  const tallest = Math.max(1, ...cols.map((c) => c.length));
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
  const pos = {};
  cols.forEach((col, i) => {
    const offset = (height - (col.length * H + (col.length - 1) * GY)) / 2;
    col.forEach((n, j) => { pos[n.id] = { x: PAD + i * (W + GX), y: offset + j * (H + GY) }; });
  });
  const maxRate = Math.max(1, ...live.edges.map((e) => e.rate));
  const svg = s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "topology graph" });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerUnits: "userSpaceOnUse", markerWidth: 11, markerHeight: 11, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const e of live.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const widthPx = 1.5 + 4 * Math.log1p(e.rate) / Math.log1p(maxRate);
    svg.append(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
      class: "edge" + (e.rate > 0 ? " flowing" : ""), "stroke-width": widthPx.toFixed(1),
      "marker-end": "url(#arrow)" }, s("title", { text: `${e.source} → ${e.target} (${e.stream}, ${e.grouping})` })));
    const label = `${fmtShort(e.rate)}/s`;
    const ly = (y1 + y2) / 2;
    svg.append(s("rect", { x: mx - 30, y: ly - 10, width: 60, height: 20, rx: 10, class: "edge-label-bg" }));
    svg.append(s("text", { x: mx, y: ly + 4, class: "edge-label", "text-anchor": "middle", text: label }));
  }
  for (const n of live.nodes) {
    const p = pos[n.id];
    const level = n.capacity >= 0.8 ? "hot" : n.capacity >= 0.5 ? "warm" : "ok";
    const g = s("a", { href: `#/topology/${encodeURIComponent(id)}/component/${encodeURIComponent(n.id)}` },
      s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 10, class: `node ${n.type} ${level}` }),
      s("text", { x: p.x + 14, y: p.y + 22, class: "node-title", text: n.id.length > 18 ? n.id.slice(0, 17) + "…" : n.id }),
      s("text", { x: p.x + 14, y: p.y + 40, class: "node-sub",
        text: `${n.type} ×${n.parallelism}` + (n.type === "bolt" ? ` · cap ${n.capacity.toFixed(2)}` : "") }),
      s("text", { x: p.x + 14, y: p.y + 54, class: "node-sub",
        text: n.type === "spout" ? `${fmtShort(n.emitRate)}/s out` : `${fmtShort(n.executeRate)}/s in` }),
      s("title", { text: n.id }));
    svg.append(g);
  }
  return h("div", { class: "graph-wrap" }, svg);
}

// --- throughput chart -----------------------------------------------------------------------------

const SERIES = [["executed", "executed (bolts)"], ["emitted", "emitted (spouts)"],
  ["acked", "acked"], ["failed", "failed"]];

function niceMax(v) {
  if (v <= 0) return 10;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function chart(samples, span) {
  const W = 560, H = 240, L = 56, R = 12, T = 12, B = 28;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "throughput chart" });
  const end = samples.length ? samples[samples.length - 1].time : Date.now() / 1000;
  const have = samples.length ? end - samples[0].time : 0;
  span = Math.min(span, Math.max(60, Math.ceil(have / 60) * 60)); // zoom in while young
  const start = end - span;
  const step = span > 120 ? 60 : 15;
  const max = niceMax(Math.max(0, ...samples.flatMap((p) => SERIES.map(([k]) => p[k] || 0))));
  const x = (t) => L + (W - L - R) * (t - start) / span;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 8, y: y(v) + 4, class: "axis", "text-anchor": "end", text: fmtShort(v) }));
  }
  for (let k = 0; k * step <= span; k++) {
    const back = k * step;
    const label = !back ? "now" : step === 60 ? `-${back / 60}m` : `-${back}s`;
    svg.append(s("text", { x: x(end - back), y: H - 8, class: "axis", "text-anchor": back === span ? "start" : "middle", text: label }));
  }
  for (const [key] of SERIES) {
    if (samples.length < 2) break;
    const pts = samples.map((p) => `${x(p.time).toFixed(1)},${y(p[key] || 0).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, class: "series " + key }));
  }
  if (samples.length < 2) {
    svg.append(s("text", { x: (L + W) / 2, y: H / 2, class: "axis", "text-anchor": "middle",
      text: "collecting samples…" }));
  }
  const legend = h("div", { class: "legend" }, SERIES.map(([k, label]) =>
    h("span", { class: "key " + k }, h("i"), label)));
  return h("div", { class: "chart-wrap" }, svg, legend);
}

// --- component view -------------------------------------------------------------------------------

async function componentView(id, c) {
  const q = "?window=" + encodeURIComponent(app.window);
  const summary = await api("/api/v1/topology/summary");
  if (!summary.topologies.some((t) => t.id === id)) return goneView(id);
  const x = await api(`/api/v1/topology/${encodeURIComponent(id)}/component/${encodeURIComponent(c)}${q}`);
  crumbs({ text: "Cluster", href: "#/" }, { text: x.name, href: "#/topology/" + encodeURIComponent(id) }, { text: c });
  const spout = x.componentType === "spout";
  const windows = (spout ? x.spoutSummary : x.boltStats).map((w) => h("tr", {}, td(w.windowPretty),
    num(w.emitted), num(w.transferred),
    spout ? h("td", { class: "num", text: fmtMs(w.completeLatency) }) : num(w.executed),
    spout ? null : h("td", { class: "num", text: fmtMs(w.executeLatency) }),
    spout ? null : capacityCell(w.capacity), num(w.acked), num(w.failed)));
  const wHead = spout ? ["Window", "#Emitted", "#Transferred", "#Complete latency", "#Acked", "#Failed"]
    : ["Window", "#Emitted", "#Transferred", "#Executed", "#Execute latency", "#Capacity", "#Acked", "#Failed"];
  const execs = x.executorStats.map((e) => h("tr", {}, td(e.id), td(`${e.host}:${e.port}`), td(e.uptime),
    num(e.emitted), num(e.transferred),
    spout ? h("td", { class: "num", text: fmtMs(e.completeLatency) }) : num(e.executed),
    spout ? null : h("td", { class: "num", text: fmtMs(e.executeLatency) }),
    spout ? null : capacityCell(e.capacity), num(e.acked), num(e.failed), logCell(e.workerLogLink)));
  const eHead = spout ? ["Executor", "Worker", "Uptime", "#Emitted", "#Transferred", "#Complete latency", "#Acked", "#Failed", "Log"]
    : ["Executor", "Worker", "Uptime", "#Emitted", "#Transferred", "#Executed", "#Execute latency", "#Capacity", "#Acked", "#Failed", "Log"];
  const errors = x.componentErrors.map((e) => h("tr", {},
    td(new Date(e.errorTime * 1000).toLocaleString()), td(`${e.errorHost}:${e.errorPort}`), num(e.errorTask),
    h("td", { class: "error-cell" }, traceback(e.error, e.errorTraceback)), logCell(e.errorWorkerLogLink)));
  const inputs = x.inputStats.map((i) => h("tr", {}, td(i.component), td(i.stream),
    td(i.grouping + (i.fields && i.fields.length ? ` (${i.fields.join(", ")})` : "")), num(i.executed),
    h("td", { class: "num", text: fmtMs(i.executeLatency) }), num(i.acked), num(i.failed)));
  const outputs = x.outputStats.map((o) => h("tr", {}, td(o.stream), num(o.emitted), num(o.transferred),
    spout ? h("td", { class: "num", text: fmtMs(o.completeLatency) }) : null,
    spout ? num(o.acked) : null, spout ? num(o.failed) : null));
  const oHead = spout ? ["Stream", "#Emitted", "#Transferred", "#Complete latency", "#Acked", "#Failed"]
    : ["Stream", "#Emitted", "#Transferred"];
  return h("div", {},
    h("div", { class: "titlebar" }, h("div", {}, h("h1", {}, c, " ", badge(x.componentType)),
      h("div", { class: "muted small", text: `${x.name} · ${x.executors} executors · ${x.tasks} tasks` }))),
    panel("Stats", table(wHead, windows)),
    progressPanel(x),
    h("div", { class: "panel-head" }, h("span", { class: "muted", text: "Streams and executors over" }), windowToggle()),
    h("div", { class: "grid2" },
      panel("Inputs", table(["Component", "Stream", "Grouping", "#Executed", "#Execute latency", "#Acked", "#Failed"],
        inputs, "A spout has no inputs.")),
      panel("Outputs", table(oHead, outputs))),
    panel("Executors", table(eHead, execs)),
    panel("Metrics", metricsTable(x.metrics)),
    panel("Errors", table(["Time", "Worker", "#Task", "Error", "Log"], errors, "No errors reported.")));
}

// The component's own metrics (context.register_metric), summed over its tasks.
function metricsTable(metrics) {
  const rows = (metrics || []).map((m) => h("tr", { "data-metric": m.name }, td(m.name), td(m.type),
    m.type === "histogram"
      ? h("td", { class: "num", text: `${fmtInt(m.count)} values, p50 ${fmtNum(m.p50)}, p99 ${fmtNum(m.p99)}` })
      : h("td", { class: "num", text: fmtNum(m.value) + (m.type === "gauge" && m.min !== m.max ? ` (${fmtNum(m.min)} – ${fmtNum(m.max)})` : "") })));
  return table(["Name", "Type", "#Value"], rows, "This component registers no metrics.");
}

// --- start ----------------------------------------------------------------------------------------

window.addEventListener("hashchange", () => { window.scrollTo(0, 0); refresh(); });
document.addEventListener("DOMContentLoaded", refresh);
