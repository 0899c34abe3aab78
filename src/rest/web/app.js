// The operator's page: polls the REST API of the server that serves it (same login, same
// origin) and draws sessions, jobs, the library, schedules and the catalog. No framework, no
// build step: plain DOM calls, and text always goes in as text (file names are untrusted).
"use strict";

const NPM = "/api/npm.backup/2.0";
const POLL_MS = 1500;
const SLOW_EVERY = 4; // library and schedules: every 4th poll; the catalog list: every 8th

let readonly = true; // until whoami says otherwise: nothing is clickable by mistake
let tick = 0;
// bytes seen at the previous poll, per session and per job, for the rates
const seen = new Map();
const servers = new Map(); // npm.backup server id -> record
// jobs running at the previous poll: when one ends, the schedules (last run) and the catalog
// (a new backup) are redrawn at once rather than at their next slow turn
let liveJobs = new Set();
let jobEnded = false;

// ---- helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(head, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { text: t })))),
    h("tbody", {}, rows));
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
}

function when(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  const d = new Date(typeof epoch === "number" ? epoch * 1000 : epoch);
  return isNaN(d) ? String(epoch) : d.toLocaleString();
}

function state(word) {
  return h("span", { class: "state-" + String(word).replace(/\W+/g, "_"), text: word });
}

function setBody(id, ...nodes) {
  document.getElementById(id).replaceChildren(...nodes);
}

function notice(text, bad) {
  const n = document.getElementById("notice");
  n.textContent = text;
  n.className = bad ? "error" : "";
}

// A REST call: the parsed JSON, or an Error carrying the HTTP status and the API's message.
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // against the origin, not the page's URL: a page opened as http://user:pass@host/ has
  // credentials in its URL, and fetch refuses URLs resolved against it
  const r = await fetch(location.origin + path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : {}; } catch (_) { json = null; }
  if (!r.ok) {
    const msg = (json && json.error && json.error.message) || text || r.statusText;
    const e = new Error(`${method} ${path}: ${r.status} ${msg}`);
    e.status = r.status;
    throw e;
  }
  return json;
}

// Draws `what` into panel `id`; a 404 is a part of the API this server does not serve (the
// scheduler is not configured), anything else an error in words.
async function panel(id, what) {
  try {
    await what();
  } catch (e) {
    if (e.status === 404) {
      setBody(id, h("p", { class: "unconfigured", text: "not configured" }));
    } else {
      setBody(id, h("p", { class: "error", text: e.message }));
    }
  }
}

// bytes per second since the previous poll of `key`
function rate(key, n) {
  const now = performance.now();
  const prev = seen.get(key);
  let r = prev ? prev.rate : null;
  if (prev && now > prev.t && n >= prev.n) r = ((n - prev.n) * 1000) / (now - prev.t);
  seen.set(key, { n, t: now, rate: r, polled: tick });
  return r;
}

function forgetStale() {
  for (const [k, v] of seen) if (tick - v.polled > 2) seen.delete(k);
}

function bar(n, total) {
  const p = h("progress", { class: "bar", "data-bytes": n });
  if (total) {
    p.max = total;
    p.value = Math.min(n, total);
  }
  const pct = total ? ` of ${bytes(total)} (${Math.min(100, (100 * n) / total).toFixed(0)}%)` : "";
  return [p, h("span", { class: "bar-label", text: bytes(n) + pct })];
}

function button(label, cls, onclick) {
  return h("button", { type: "button", class: cls, disabled: readonly, onclick, title: readonly ? "read-only login" : null }, label);
}

// ---- sessions and jobs -------------------------------------------------------------------

let jobsBySession = new Map();

async function drawSessions() {
  const v = await api("GET", "/api/protocols/ndmp/sessions?fields=*");
  const rows = (v.records || []).map((s) => {
    const moved = Math.max(s.data ? s.data.bytes_processed || 0 : 0, s.mover ? s.mover.bytes_moved || 0 : 0);
    const job = jobsBySession.get(String(s.id));
    const r = rate("s" + s.id, moved);
    const href = s._links && s._links.self && s._links.self.href;
    const op = s.data && s.data.operation !== "noaction" ? s.data.operation : (s.mover && s.mover.mode !== "noaction" ? "mover " + s.mover.mode : "");
    return h("tr", { "data-id": s.id },
      h("td", { class: "num", text: s.id }),
      h("td", { text: `${s.client_address}:${s.client_port}` }),
      h("td", { text: s.user || "–" }),
      h("td", { text: op || "–" }),
      h("td", {}, state(s.data ? s.data.state : "–"), " / ", state(s.mover ? s.mover.state : "–")),
      h("td", { text: s.tape_device || "–" }),
      h("td", { class: "wrap", text: s.data_path || "" }),
      h("td", {}, bar(moved, job && job.progress ? job.progress.estimated_total : null)),
      h("td", { class: "num rate", text: r === null ? "–" : bytes(Math.round(r)) + "/s" }),
      h("td", {}, button("Kill", "danger kill", () => kill(s.id, href))));
  });
  setBody("sessions", rows.length
    ? table(["id", "client", "user", "operation", "data / mover", "tape", "path", "progress", "rate", ""], rows)
    : h("p", { class: "empty", text: "no session" }));
}

async function kill(id, href) {
  if (!confirm(`Kill NDMP session ${id}? Its DATA and MOVER halt ABORTED.`)) return;
  try {
    await api("DELETE", href);
    notice(`session ${id} killed`);
  } catch (e) {
    notice(e.message, true);
  }
  poll();
}

async function drawJobs() {
  const v = await api("GET", "/api/cluster/jobs?fields=*");
  const jobs = (v.records || []).slice();
  jobsBySession = new Map();
  for (const j of jobs) if (j.session && (j.state === "running" || j.state === "paused")) jobsBySession.set(String(j.session.id), j);
  const live = (j) => (j.state === "running" || j.state === "paused" || j.state === "queued");
  jobs.sort((a, b) => (live(b) - live(a)) || String(b.start_time).localeCompare(String(a.start_time)));
  const liveNow = new Set(jobs.filter(live).map((j) => j.uuid));
  for (const u of liveJobs) if (!liveNow.has(u)) jobEnded = true;
  liveJobs = liveNow;
  const rows = jobs.slice(0, 25).map((j) => {
    const p = j.progress || {};
    const n = p.bytes || 0;
    const r = live(j) ? rate("j" + j.uuid, n) : null;
    const href = j._links && j._links.self && j._links.self.href;
    const cancel = button("Cancel", "danger cancel", () => cancelJob(j.uuid, href));
    if (!live(j)) cancel.disabled = true;
    return h("tr", { "data-uuid": j.uuid, "data-state": j.state },
      h("td", { class: "wrap", text: j.description || j.uuid }),
      h("td", {}, state(j.state)),
      h("td", { class: "wrap", text: j.message || "" }),
      h("td", { text: when(j.start_time) }),
      h("td", {}, bar(n, p.estimated_total)),
      h("td", { class: "num rate", text: r === null ? (live(j) ? "–" : bytes(p.rate || 0) + "/s avg") : bytes(Math.round(r)) + "/s" }),
      h("td", {}, cancel));
  });
  setBody("jobs", rows.length
    ? table(["job", "state", "message", "started", "progress", "rate", ""], rows)
    : h("p", { class: "empty", text: "no job" }));
}

async function cancelJob(uuid, href) {
  if (!confirm("Cancel this job? Its operation is aborted.")) return;
  try {
    // ONTAP's cancel: answers once the job has ended
    await api("PATCH", href + "?action=cancel");
    notice("job canceled");
  } catch (e) {
    notice(e.message, true);
  }
  poll();
}

// ---- library -----------------------------------------------------------------------------

function holds(c) {
  if (!c || !c.holds || !c.holds.length) return "";
  return h("ul", { class: "holds" }, c.holds.map((b) =>
    h("li", { text: `backup ${b.backup_id}: ${b.path} level ${b.level} (${b.status}), tape file ${b.tape_file}` + (b.parts > 1 ? `, part ${b.part} of ${b.parts}` : "") })));
}

function fill(c) {
  if (!c) return "–";
  if (!c.readable) return h("span", { class: "error", text: "unreadable" });
  const word = c.blank ? "blank" : c.full ? "full" : "";
  return [h("progress", { max: c.capacity || 1, value: c.bytes_used || 0 }),
    h("span", { class: "bar-label", text: `${bytes(c.bytes_used)} of ${bytes(c.capacity)}` + (word ? ` — ${word}` : "") + (c.write_protected ? " — write protected" : "") })];
}

function cartCells(c) {
  return [
    h("td", { text: c ? c.label : "–" }),
    h("td", { text: c ? c.volume_tag || "" : "" }),
    h("td", {}, fill(c)),
    h("td", { class: "wrap" }, holds(c)),
  ];
}

async function drawLibrary() {
  const v = await api("GET", "/api/ndmpd/library");
  const drives = (v.drives || []).map((d) =>
    h("tr", { "data-drive": d.name },
      h("td", { text: d.name }),
      h("td", { class: "num", text: d.address ?? "–" }),
      h("td", {}, state(d.state)),
      cartCells(d.cartridge)));
  const places = (list) => list.filter((p) => p.cartridge).map((p) =>
    h("tr", { "data-place": p.name },
      h("td", { text: p.name }),
      h("td", { class: "num", text: p.address ?? "–" }),
      cartCells(p.cartridge)));
  const empty = (list) => list.filter((p) => !p.cartridge).map((p) => p.number);
  const placeTable = (kind, list) => list.some((p) => p.cartridge)
    ? table([kind, "address", "cartridge", "volume tag", "used", "holds"], places(list))
    : h("p", { class: "empty", text: list.length ? "all empty" : "none" });
  const parts = [
    h("h3", { text: "Drives" }),
    table(["drive", "address", "state", "cartridge", "volume tag", "used", "holds"], drives),
    h("h3", { text: `Slots (${(v.slots || []).length}; empty: ${empty(v.slots || []).join(", ") || "none"})` }),
    placeTable("slot", v.slots || []),
    h("h3", { text: `Import/export slots (${(v.import_export || []).length}; empty: ${empty(v.import_export || []).join(", ") || "none"})` }),
    placeTable("port", v.import_export || []),
  ];
  if ((v.outside || []).length) {
    parts.push(h("h3", { text: "Outside the library" }),
      table(["cartridge", "volume tag", "used", "holds"], v.outside.map((c) => h("tr", {}, cartCells(c)))));
  }
  parts.push(h("p", { class: v.catalog && v.catalog.error ? "error" : "empty", text:
    !v.catalog ? "no catalog: what each cartridge holds is not known"
      : v.catalog.error ? `catalog ${v.catalog.path}: ${v.catalog.error}` : `holdings from the catalog ${v.catalog.path}` }));
  setBody("library", ...parts);
}

// ---- schedules and catalog (npm.backup) ------------------------------------------------------

function ruleText(r) {
  if (!r) return "–";
  if (typeof r === "string") return r;
  return Object.entries(r).filter(([, x]) => x !== null && x !== undefined && !(Array.isArray(x) && !x.length))
    .map(([k, x]) => `${k.toUpperCase()}=${Array.isArray(x) ? x.join(",") : x}`).join(";");
}

function serverName(id) {
  const s = servers.get(String(id));
  return s ? s.name : `server ${id}`;
}

async function loadServers() {
  const v = await api("GET", `${NPM}/servers`);
  servers.clear();
  for (const s of v.items || []) servers.set(String(s.id), s);
}

async function drawSchedules() {
  const v = await api("GET", `${NPM}/scheduled_backups`);
  const rows = (v.items || []).map((s) =>
    h("tr", { "data-schedule": s.id },
      h("td", { text: s.name }),
      h("td", { class: "wrap", text: s.desc || "" }),
      h("td", { text: serverName(s.server_id) }),
      h("td", { class: "wrap", text: ruleText(s.rrule) }),
      h("td", { text: s.active ? "active" : "inactive" }),
      h("td", { text: when(s.next_backup) }),
      h("td", { text: when(s.last_backup) }),
      h("td", { class: "num", text: s.retention }),
      h("td", {}, button("Run now", "run", () => runNow(s)))));
  setBody("schedules", rows.length
    ? table(["name", "description", "server", "rule", "", "next run", "last run", "keep", ""], rows)
    : h("p", { class: "empty", text: "no schedule" }));
}

async function runNow(s) {
  try {
    const v = await api("POST", `${NPM}/scheduled_backups/items/${encodeURIComponent(s.id)}/run`);
    notice(`schedule ${s.name} started` + (v && v.job ? ` (job ${v.job.uuid})` : ""));
  } catch (e) {
    notice(e.message, true);
  }
  poll();
}

async function restore(serverId, backupId, paths, what) {
  const server = servers.get(String(serverId));
  const dest = prompt(`Restore ${what} to which directory on ${server ? server.name : "the server"}?`, server ? server.path + "/restored" : "");
  if (!dest) return;
  try {
    const v = await api("POST", `${NPM}/completed_backups/server/${encodeURIComponent(serverId)}/items/${encodeURIComponent(backupId)}/restore`, { paths, destination: dest });
    notice(`restore of ${what} to ${dest} started` + (v && v.job ? ` (job ${v.job.uuid})` : ""));
  } catch (e) {
    notice(e.message, true);
  }
  poll();
}

async function drawCatalog() {
  await loadServers();
  const rows = [];
  for (const id of servers.keys()) {
    const v = await api("GET", `${NPM}/backups/server/${encodeURIComponent(id)}`);
    for (const b of v.completed || []) rows.push(b);
  }
  rows.sort((a, b) => (b.created_on || 0) - (a.created_on || 0));
  setBody("catalog", rows.length
    ? table(["created", "server", "name", "status", "size", ""], rows.map((b) =>
      h("tr", { "data-backup": b.id },
        h("td", { text: when(b.created_on) }),
        h("td", { text: serverName(b.server_id) }),
        h("td", { class: "wrap", text: b.name + (b.desc ? ` — ${b.desc}` : "") }),
        h("td", {}, state(b.status)),
        h("td", { class: "num", text: bytes(b.size) }),
        h("td", {}, button("Restore", "restore", () => restore(b.server_id, b.id, [], `backup ${b.name}`))))))
    : h("p", { class: "empty", text: "no completed backup" }));
}

async function search(ev) {
  ev.preventDefault();
  const name = document.getElementById("search-name").value.trim();
  if (!name) { setBody("search-results"); return; }
  await panel("search-results", async () => {
    if (!servers.size) await loadServers();
    const v = await api("GET", `${NPM}/files?name=${encodeURIComponent(name)}&limit=200`);
    const found = Array.isArray(v) ? v : v.items || v.records || v.files || [];
    setBody("search-results", found.length
      ? table(["path", "size", "modified", "backup", "server", ""], found.map((f) => {
        const backup = f.backup_id ?? f.backup ?? f.id;
        return h("tr", { "data-backup": backup, "data-path": f.path },
          h("td", { class: "wrap", text: f.path }),
          h("td", { class: "num", text: bytes(f.size) }),
          h("td", { text: when(f.mtime) }),
          h("td", { text: backup }),
          h("td", { text: serverName(f.server_id) }),
          h("td", {}, f.server_id === null || f.server_id === undefined
            ? h("span", { class: "empty", text: "no server to restore to" })
            : button("Restore", "restore", () => restore(f.server_id, backup, [f.path], f.path))));
      }))
      : h("p", { class: "empty", text: `no file name contains “${name}”` }));
  });
}

// ---- the loop ------------------------------------------------------------------------------

let polling = false;

async function poll() {
  if (polling) return;
  polling = true;
  const slow = tick % SLOW_EVERY === 0;
  try {
    // jobs first: the sessions' progress bars take their totals from them
    await panel("jobs", drawJobs);
    await panel("sessions", drawSessions);
    const ended = jobEnded;
    jobEnded = false;
    if (slow || ended) {
      await panel("library", drawLibrary);
      await panel("schedules", async () => { if (!servers.size) await loadServers().catch(() => {}); await drawSchedules(); });
    }
    if (tick % (2 * SLOW_EVERY) === 0 || ended) await panel("catalog", drawCatalog);
    const st = document.getElementById("status");
    st.textContent = "updated " + new Date().toLocaleTimeString();
    st.className = "";
  } catch (e) {
    const st = document.getElementById("status");
    st.textContent = e.message;
    st.className = "error";
  } finally {
    forgetStale();
    tick++;
    polling = false;
  }
}

async function start() {
  try {
    const me = await api("GET", "/api/ndmpd/whoami");
    readonly = me.role !== "admin";
    document.body.dataset.role = me.role;
    document.getElementById("login").textContent = `${me.user} (${me.role}${readonly ? ": buttons disabled" : ""})`;
  } catch (e) {
    document.getElementById("login").textContent = e.message;
  }
  document.getElementById("search").addEventListener("submit", search);
  await poll();
  setInterval(poll, POLL_MS);
}

start();
