/* LLM OS admin console: fills each server-rendered page from the JSON under /api.
 * Vanilla JS, no build step. DOM is built with el() (never innerHTML with data). */
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const PAGE = document.body.dataset.page;
const content = document.getElementById("content");

/* ---------------------------------------------------------------- helpers */

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, doc) {
    super(doc && doc.error ? doc.error : `HTTP ${status}`);
    this.status = status;
    this.hint = doc && doc.hint ? doc.hint : "";
  }
}

async function api(path, options = {}) {
  const opts = { credentials: "same-origin", ...options };
  opts.headers = { Accept: "application/json", ...(options.headers || {}) };
  if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = CSRF;
  if (opts.json !== undefined) {
    opts.body = JSON.stringify(opts.json);
    opts.headers["Content-Type"] = "application/json";
    delete opts.json;
  }
  const response = await fetch(path, opts);
  if (response.status === 401) {
    window.location.assign("/login?next=" + encodeURIComponent(location.pathname));
    throw new ApiError(401, { error: "not logged in" });
  }
  let doc = null;
  try { doc = await response.json(); } catch (_) { doc = null; }
  if (!response.ok) throw new ApiError(response.status, doc);
  return doc;
}

const fmt = {
  bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
  },
  duration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  },
  seconds(s) { return s === null || s === undefined ? "–" : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`; },
  time(t) { return t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "–"; },
  datetime(t) { return t ? new Date(t * 1000).toLocaleString([], { hour12: false }) : "–"; },
  num(x, digits = 1) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); },
};

const STATE_CLASS = {
  READY: "ok", ready: "ok", LOADING: "warn", starting: "warn", degraded: "warn",
  FAILED: "bad", UNAVAILABLE: "bad", unavailable: "bad", UNLOADED: "", added: "ok",
  removed: "bad", add: "ok", remove: "bad", bind: "info", unbind: "warn", change: "info",
};

function badge(text, cls) {
  return el("span", { class: `badge ${cls !== undefined ? cls : STATE_CLASS[text] || ""}` }, text);
}

function card(title, sub, ...body) {
  return el("section", { class: "card" }, el("h2", {}, title, sub ? el("span", { class: "sub" }, sub) : null), ...body);
}

function tile(label, value, note, cls) {
  return el("div", { class: `tile ${cls || ""}` }, el("div", { class: "label" }, label),
    el("div", { class: "value" }, value), note ? el("div", { class: "note" }, note) : null);
}

function bar(used, total, cls) {
  const pct = total ? Math.max(0, Math.min(100, 100 * used / total)) : 0;
  return el("div", { class: `bar ${cls || ""}`, title: `${pct.toFixed(1)}%` }, el("span", { style: `width:${pct}%` }));
}

function table(headers, rows, opts = {}) {
  return el("table", { class: opts.class || "" },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.label || h)))),
    el("tbody", {}, rows));
}

function notice(text, cls) { return el("div", { class: `notice ${cls || ""}` }, text); }

function replace(node, ...children) { node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)); }

/* Run `load` now and every `ms`; errors are shown in place instead of the page. */
function every(ms, load) {
  let timer = null;
  const run = async () => {
    try { await load(); } catch (err) { if (err.status !== 401) showError(err); }
    timer = setTimeout(run, ms);
  };
  run();
  return () => clearTimeout(timer);
}

let errorBox = null;
function showError(err) {
  if (!errorBox) { errorBox = el("div", { class: "notice bad", id: "error" }); content.prepend(errorBox); }
  errorBox.textContent = `${err.message}${err.hint ? ` (${err.hint})` : ""}`;
}
function clearError() { if (errorBox) { errorBox.remove(); errorBox = null; } }

/* --------------------------------------------------------- the health pill */

async function refreshPill() {
  const pill = document.getElementById("health-pill");
  try {
    const h = await api("/api/health");
    pill.className = `status-pill ${STATE_CLASS[h.status] || ""}`;
    replace(pill, el("span", { class: "dot" }), h.status);
    pill.title = h.summary;
  } catch (_) { pill.textContent = "unreachable"; pill.className = "status-pill bad"; }
}

/* ---------------------------------------------------------------- overview */

function pcrTable(tpm) {
  const entries = Object.entries(tpm.pcrs || {});
  if (!entries.length) return el("p", { class: "muted" }, tpm.pcr_note || "PCR values unavailable");
  const zero = /^0+$/;
  return table(["PCR", "SHA-256"], entries.map(([i, v]) =>
    el("tr", { class: zero.test(v) ? "zero" : "" }, el("td", {}, i), el("td", { class: "mono" }, v))), { class: "pcr" });
}

function journalTable(journal) {
  if (!journal.available) return el("p", { class: "muted", id: "boot-unavailable" }, journal.reason);
  return logList(journal.lines.slice().reverse());
}

function keyDetails(key) {
  const rows = [["provider", key.provider], ["released", key.released === null ? "not yet" : key.released ? "yes" : "no"]];
  for (const [k, v] of Object.entries(key)) {
    if (["provider", "released", "reason"].includes(k) || v === "" || v === null) continue;
    rows.push([k.replaceAll("_", " "), typeof v === "object" ? JSON.stringify(v) : String(v)]);
  }
  if (key.reason) rows.push(["reason", key.reason]);
  return el("dl", { class: "kv" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", { class: k.includes("id") ? "mono" : "" }, v)]));
}

function pageOverview() {
  every(5000, async () => {
    const o = await api("/api/overview");
    clearError();
    const h = o.health;
    const key = h.key;
    const keyState = key.released === true ? ["released", "ok"] : key.released === false ? ["not released", "bad"] : ["pending", "warn"];
    replace(content,
      el("div", { class: "tiles" },
        tile("Status", el("span", { class: `badge ${STATE_CLASS[h.status] || ""}`, style: "font-size:16px" }, h.status), h.ready ? "answering requests" : "not ready"),
        tile("Models serving", `${o.models_ready} / ${o.models_total}`, "configured models READY"),
        tile("Uptime", fmt.duration(o.uptime_s), o.system_uptime_s ? `machine up ${fmt.duration(o.system_uptime_s)}` : null),
        tile("Version", `v${o.version}`, o.image_version ? `llmos supervisor; image version ${o.image_version}` : "llmos supervisor"),
        tile("Fleet key", badge(keyState[0], keyState[1]), `${key.provider} provider`),
        tile("TPM", badge(o.tpm.present ? "present" : "absent", o.tpm.present ? "ok" : ""), o.tpm.description),
        tile("Boot protection", badge(key.protected ? "protected" : "not protected", key.protected ? "ok" : "bad"), key.secure_boot === undefined ? "" : `Secure Boot ${key.secure_boot ? "on" : "off"}; PCRs ${key.pcrs || "-"}${key.policy_signed ? ` + signed ${key.signed_pcrs}` : ""}`)),
      h.reasons.length ? card("Attention", null, el("ul", { class: "reasons" }, h.reasons.map((r) => el("li", {}, r)))) : null,
      el("div", { class: "grid grid-2" },
        card("Fleet key", "what unlocks the sealed packs", keyDetails(key)),
        card("TPM measurements", "PCRs, SHA-256 bank", pcrTable(o.tpm))),
      o.tls ? card("Admin page certificate", `${o.tls.origin}; compare with the fingerprint on the console`,
        el("dl", { class: "kv" }, el("dt", {}, "SHA-256"), el("dd", { class: "mono", id: "tls-fingerprint" }, o.tls.fingerprint_sha256))) : null,
      card("Boot events", "this boot's journal, newest first", journalTable(o.boot)));
  });
}

/* ------------------------------------------------------------ accelerators */

function pageAccelerators() {
  every(3000, async () => {
    const a = await api("/api/accelerators");
    clearError();
    if (!a.available) { replace(content, notice(a.reason, "info")); return; }
    const rows = a.accelerators.map((x) => el("tr", {},
      el("td", { class: "mono" }, x.address),
      el("td", {}, el("div", {}, el("strong", {}, x.model)), el("div", { class: "muted" }, `${x.vendor} · driver ${x.driver || "none"}`)),
      el("td", {}, x.device || "–"),
      el("td", {}, x.numa_node === null ? "–" : x.numa_node),
      el("td", { style: "min-width:180px" }, x.memory_total_bytes ? [bar(x.memory_used_bytes || 0, x.memory_total_bytes),
        el("div", { class: "muted" }, `${fmt.bytes(x.memory_used_bytes)} of ${fmt.bytes(x.memory_total_bytes)}`)] : "unknown"),
      el("td", {}, x.claimed ? badge("claimed", "ok") : badge("not claimed", "warn")),
      el("td", { class: "mono" }, x.nodes.map((n) => el("div", {}, n.path)))));
    const history = a.history.map((e) => el("tr", {},
      el("td", {}, fmt.datetime(e.t)), el("td", {}, badge(e.action)), el("td", { class: "mono" }, e.device), el("td", {}, e.detail)));
    replace(content,
      el("div", { class: "tiles" },
        tile("Accelerators", a.accelerators.length, a.accelerators.length ? "found on the PCI bus" : "models run on the CPU"),
        tile("Claimed", a.accelerators.filter((x) => x.claimed).length, "device nodes owned by the service"),
        tile("Hot-plug events", a.history.length, "since the server started")),
      card("Devices", null, rows.length ? table(["PCI address", "Model", "Device", "NUMA", "Memory", "Claim", "Nodes"], rows)
        : el("p", { class: "empty" }, "No accelerator is present: every model runs on the CPU.")),
      a.shared_nodes.length ? card("Shared device nodes", null, el("div", { class: "mono" }, a.shared_nodes.map((n) => el("div", {}, n.path)))) : null,
      card("Hot-plug history", "newest first", history.length ? table(["When", "Event", "Device", "Detail"], history)
        : el("p", { class: "empty" }, "No device was added or removed since the server started.")));
  });
}

/* ------------------------------------------------------------------ memory */

const MEM_COLORS = { hugepages: "#4f46e5", locked: "#12a150", other: "#98a2b3" };

function pageMemory() {
  every(3000, async () => {
    const m = await api("/api/memory");
    clearError();
    const ramUsed = m.ram_total_bytes - m.ram_available_bytes;
    const hpBytes = m.hugepages_total * m.hugepage_bytes;
    const loaded = m.models.filter((x) => x.plain_bytes || x.mapped_bytes);
    const biggest = Math.max(1, ...loaded.map((x) => x.mapped_bytes || x.plain_bytes));
    const modelRows = loaded.map((x) => {
      const total = x.mapped_bytes || x.plain_bytes;
      const huge = x.hugepage_bytes || 0, locked = x.locked_bytes || 0, other = Math.max(0, total - huge - locked);
      const seg = (v, c) => v ? el("span", { style: `width:${100 * v / biggest}%;background:${c}`, title: fmt.bytes(v) }) : null;
      return el("div", { class: "barrow" }, el("div", { class: "name" }, x.name),
        el("div", { class: "stack" }, seg(huge, MEM_COLORS.hugepages), seg(locked, MEM_COLORS.locked), seg(other, MEM_COLORS.other)),
        el("div", { class: "amount" }, fmt.bytes(total)));
    });
    replace(content,
      el("div", { class: "tiles" },
        tile("RAM in use", fmt.bytes(ramUsed), [bar(ramUsed, m.ram_total_bytes), `of ${fmt.bytes(m.ram_total_bytes)}`]),
        tile("Supervisor RSS", fmt.bytes(m.process_rss_bytes), `${m.cpu_count} CPUs · ${fmt.num(m.cpu_percent, 0)}% busy`),
        tile("Pinned (mlock)", fmt.bytes(m.process_locked_bytes), "never swapped out"),
        tile("Hugepages", `${m.hugepages_used} / ${m.hugepages_total}`, [bar(m.hugepages_used, m.hugepages_total, "ok"),
          `${fmt.bytes(m.hugepage_bytes)} pages · ${fmt.bytes(hpBytes)} reserved`])),
      m.fallbacks.length ? card("Memory fallbacks", "weights are not where they should be",
        m.fallbacks.map((f) => notice(`${f.what}: ${f.reason} (×${f.count}). To fix: ${f.fix}`))) : null,
      card("Memory per model", m.pool ? "decrypted weights, by where they live" : "decrypted weights held by each loaded model",
        modelRows.length ? [modelRows, m.pool ? el("div", { class: "legend" },
          el("span", {}, el("i", { style: `background:${MEM_COLORS.hugepages}` }), "hugepages"),
          el("span", {}, el("i", { style: `background:${MEM_COLORS.locked}` }), "mlock'ed"),
          el("span", {}, el("i", { style: `background:${MEM_COLORS.other}` }), "not pinned")) : null]
          : el("p", { class: "empty" }, "No model holds memory: none is loaded.")),
      m.accelerators.length ? card("Accelerator memory", null, m.accelerators.map((a) => el("div", { class: "barrow" },
        el("div", { class: "name" }, a.device), bar(a.used_bytes || 0, a.total_bytes || 0),
        el("div", { class: "amount" }, `${fmt.bytes(a.used_bytes)} / ${fmt.bytes(a.total_bytes)}`)))) : null);
  });
}

/* ------------------------------------------------------------------ models */

function modelActions(m, reload) {
  const act = async (verb, button) => {
    button.disabled = true;
    try { await api(`/api/models/${encodeURIComponent(m.name)}/${verb}`, { method: "POST" }); clearError(); }
    catch (err) { showError(err); }
    await reload();
  };
  const loadBtn = el("button", { class: "btn btn-sm btn-primary", "data-action": "load", "data-model": m.name,
    disabled: m.state === "READY" || m.state === "LOADING", onclick: (e) => act("load", e.currentTarget) }, "Load");
  const unloadBtn = el("button", { class: "btn btn-sm", "data-action": "unload", "data-model": m.name,
    disabled: m.state !== "READY", onclick: (e) => act("unload", e.currentTarget) }, "Unload");
  return el("div", { class: "row" }, loadBtn, unloadBtn);
}

function uploadCard(reload) {
  const input = el("input", { type: "file", id: "pack-file", accept: ".sealed" });
  const status = el("div", { class: "muted", id: "upload-status" });
  const send = async (button) => {
    if (!input.files.length) { status.textContent = "Choose a .sealed file first."; return; }
    const body = new FormData();
    body.append("pack", input.files[0]);
    button.disabled = true;
    status.textContent = `Uploading ${input.files[0].name}…`;
    try {
      const r = await api("/api/models", { method: "POST", body });
      status.textContent = `${r.name} ${r.version}: ${r.state} (stored as ${r.pack})`;
    } catch (err) { status.textContent = `Refused: ${err.message}${err.hint ? ` — ${err.hint}` : ""}`; }
    button.disabled = false;
    await reload();
  };
  return card("Upload a sealed pack", "checked, stored encrypted, then loaded; another version of a serving model takes over once warm",
    el("div", { class: "row" }, el("div", { class: "grow" }, input),
      el("button", { class: "btn btn-primary", id: "upload", onclick: (e) => send(e.currentTarget) }, "Upload and load")), status);
}

function pageModels() {
  const list = el("div", {});
  const reload = async () => {
    const r = await api("/api/models");
    const rows = [];
    for (const m of r.models) {
      rows.push(el("tr", { "data-model-row": m.name },
        el("td", {}, el("strong", {}, m.name), el("div", { class: "muted" }, [m.kind, m.version && `v${m.version}`].filter(Boolean).join(" · "))),
        el("td", { "data-state": m.state }, badge(m.state)),
        el("td", {}, [m.runtime, m.quantization].filter(Boolean).join(" · ") || "–"),
        el("td", { class: "num" }, fmt.bytes(m.size_packed)),
        el("td", { class: "num" }, fmt.bytes(m.size_plain)),
        el("td", { class: "num" }, m.compression_ratio ? `${m.compression_ratio.toFixed(2)}×` : "–"),
        el("td", { class: "num" }, fmt.seconds(m.load_time_s)),
        el("td", {}, modelActions(m, reload))));
      if (m.reason) rows.push(el("tr", { class: "reason" }, el("td", { colspan: 8 }, `${m.error_type ? m.error_type + ": " : ""}${m.reason}`)));
      const u = m.update;
      if (u) rows.push(el("tr", { class: "reason", "data-update": u.state }, el("td", { colspan: 8 },
        `Update to v${u.version} (from v${u.previous}): ${u.state}${u.reason ? ` — ${u.reason}` : ""}`)));
    }
    replace(list, rows.length ? table(["Model", "State", "Runtime", { label: "Pack", num: true }, { label: "Unpacked", num: true },
      { label: "Ratio", num: true }, { label: "Load time", num: true }, "Actions"], rows)
      : el("p", { class: "empty" }, `No model is configured. Upload a sealed pack below (stored in ${r.packs_dir}).`));
  };
  replace(content, card("Models", "state, pack size, compression and load time", list), uploadCard(reload));
  every(3000, async () => { await reload(); clearError(); });
}

/* ------------------------------------------------------------------ charts */

const CHARTS = [
  { id: "rps", title: "Requests per second", unit: "req/s",
    series: [["requests_per_s", "all", "#4f46e5"], ["failures_per_s", "failed", "#d92d20"]] },
  { id: "latency", title: "Request latency", sub: "tensor and embedding models", unit: "ms",
    series: [["p50_ms", "p50", "#12a150"], ["p99_ms", "p99", "#d92d20"]] },
  { id: "tokens", title: "Tokens per second", sub: "generated by LLMs", unit: "tok/s",
    series: [["tokens_per_s", "generated", "#c77700"]] },
  { id: "ttft", title: "Time to first token", sub: "LLM requests", unit: "ms",
    series: [["ttft_p50_ms", "p50", "#0891b2"], ["ttft_p99_ms", "p99", "#7c3aed"]] },
  { id: "queue", title: "Queue depth", sub: "all models", unit: "requests", wide: true,
    series: [["waiting", "waiting", "#7c3aed"], ["running", "running", "#0891b2"]] },
];

function pageCharts() {
  const data = { t: [] };
  let capacity = 600, last = null;
  const plots = [];
  const grid = el("div", { class: "grid grid-2" });
  replace(content, el("p", { class: "muted" }, "Sampled from the server's metrics every second; rates and percentiles over a sliding window."), grid);
  for (const c of CHARTS) {
    for (const [key] of c.series) data[key] = [];
    const now = el("div", { class: "now" });
    const target = el("div", { class: "chart", id: `chart-${c.id}`, dataset: { points: "0" } });
    grid.append(el("section", { class: `card chart-card${c.wide ? " wide" : ""}` },
      el("div", { class: "chart-head" }, el("h2", {}, c.title, c.sub ? el("span", { class: "sub" }, c.sub) : null), now), target));
    const opts = {
      width: 400, height: 220, cursor: { drag: { x: false, y: false } }, legend: { live: false },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
      axes: [
        { stroke: "#667085", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#eef0f3" },
          values: (u, splits) => splits.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false })) },
        { stroke: "#667085", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#eef0f3" }, size: 56,
          values: (u, splits) => splits.map((v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2))) },
      ],
      series: [{}, ...c.series.map(([, label, color]) => ({ label, stroke: color, width: 2, fill: color + "1f", points: { show: false } }))],
    };
    const plot = new uPlot(opts, [[], ...c.series.map(() => [])], target);
    plots.push({ c, plot, target, now });
  }
  const resize = () => plots.forEach(({ plot, target }) => plot.setSize({ width: Math.max(280, target.clientWidth), height: 200 }));
  window.addEventListener("resize", resize);
  requestAnimationFrame(resize);
  every(1000, async () => {
    const r = await api(last === null ? "/api/charts" : `/api/charts?since=${last}`);
    capacity = r.capacity;
    for (const k of Object.keys(data)) data[k].push(...(r.columns[k] || []));
    const extra = data.t.length - capacity;
    if (extra > 0) for (const k of Object.keys(data)) data[k].splice(0, extra);
    if (data.t.length) last = data.t[data.t.length - 1];
    for (const { c, plot, target, now } of plots) {
      plot.setData([data.t, ...c.series.map(([key]) => data[key])]);
      target.dataset.points = String(data.t.length);
      const firstKey = c.series[0][0];
      target.dataset.peak = String(Math.max(0, ...data[firstKey].filter((v) => v !== null)));
      replace(now, c.series.map(([key, label], i) => {
        const v = data[key].length ? data[key][data[key].length - 1] : null;
        const shown = v === null || v === undefined ? "–" : v.toFixed(v < 10 ? 2 : 0);
        return [i ? el("span", { class: "sep" }, " · ") : null, c.series.length > 1 ? el("small", { class: "what" }, label) : null, shown];
      }), el("small", {}, c.unit));
    }
    clearError();
  });
}

/* -------------------------------------------------------------------- logs */

function logList(lines) {
  return el("div", { class: "log", id: "log-lines" }, lines.map((l) =>
    el("div", { class: `line lvl-${l.level}` }, el("span", { class: "t" }, fmt.time(l.t)), el("span", { class: "lvl" }, l.level),
      el("span", { class: "src", title: l.source }, l.source), el("span", { class: "msg" }, l.message))));
}

function pageLogs() {
  const filter = el("input", { type: "text", placeholder: "Filter messages…", id: "log-filter" });
  const level = el("select", { id: "log-level" }, ["all levels", "WARNING and worse", "ERROR and worse"].map((x, i) => el("option", { value: i }, x)));
  const follow = el("input", { type: "checkbox", id: "log-follow", checked: true });
  const note = el("span", { class: "muted" });
  const box = el("div", {});
  let lines = [];
  const severe = { 1: ["WARNING", "ERROR", "CRITICAL", "CRIT", "ALERT", "EMERG"], 2: ["ERROR", "CRITICAL", "CRIT", "ALERT", "EMERG"] };
  const render = () => {
    const q = filter.value.toLowerCase();
    const keep = lines.filter((l) => (!q || l.message.toLowerCase().includes(q) || l.source.toLowerCase().includes(q))
      && (level.value === "0" || severe[level.value].includes(l.level)));
    const list = logList(keep);
    replace(box, keep.length ? list : el("p", { class: "empty" }, "No line matches."));
    if (follow.checked) list.scrollTop = list.scrollHeight;
  };
  filter.addEventListener("input", render);
  level.addEventListener("change", render);
  replace(content, card("Supervisor log", null,
    el("div", { class: "toolbar" }, filter, level, el("label", {}, follow, " follow"), note), box));
  every(3000, async () => {
    if (!follow.checked && lines.length) return;
    const r = await api("/api/logs");
    lines = r.lines;
    note.textContent = r.source === "journal" ? "from the journal" : r.note;
    render();
    clearError();
  });
}

/* -------------------------------------------------------------- playground */

function modelSelect(models, id) {
  return el("select", { id }, models.map((m) => el("option", { value: m.name }, `${m.name} (${m.state})`)));
}

function chatCard(llms, available) {
  if (!available) return card("Chat", null, notice("This build has no OpenAI-compatible API (llmos.web.openai), so there is nothing to chat with.", "info"));
  if (!llms.length) return card("Chat", null, notice("No LLM (causal-lm) model is configured on this server.", "info"));
  const select = modelSelect(llms, "chat-model");
  const log = el("div", { class: "chat", id: "chat-log" });
  const input = el("textarea", { id: "chat-input", rows: 2, placeholder: "Ask something… (Enter to send)" });
  const sendBtn = el("button", { class: "btn btn-primary", id: "chat-send" }, "Send");
  const history = [];
  const send = async () => {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    history.push({ role: "user", content: text });
    log.append(el("div", { class: "msg-bubble user" }, text));
    const bubble = el("div", { class: "msg-bubble assistant", "data-role": "assistant" }, "…");
    const meta = el("div", { class: "msg-meta" });
    log.append(bubble, meta);
    log.scrollTop = log.scrollHeight;
    sendBtn.disabled = true;
    const started = performance.now();
    let answer = "", tokens = 0, firstAt = null;
    try {
      const response = await fetch("/api/playground/v1/chat/completions", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF, Accept: "text/event-stream" },
        body: JSON.stringify({ model: select.value, messages: history, stream: true, max_tokens: 128, temperature: 0.3 }),
      });
      if (!response.ok) { let doc = null; try { doc = await response.json(); } catch (_) {} throw new ApiError(response.status, doc); }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const payload = line.slice(5).trim();
            if (payload === "[DONE]") continue;
            const chunk = JSON.parse(payload);
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta ? chunk.choices[0].delta.content || "" : "";
            if (delta) { if (firstAt === null) firstAt = performance.now(); answer += delta; tokens += 1; bubble.textContent = answer; log.scrollTop = log.scrollHeight; }
          }
        }
      }
      history.push({ role: "assistant", content: answer });
      const secs = (performance.now() - started) / 1000;
      meta.textContent = `${tokens} chunks in ${secs.toFixed(2)} s · first token after ${firstAt === null ? "–" : ((firstAt - started) / 1000).toFixed(2) + " s"}`;
      bubble.dataset.done = "1";
    } catch (err) {
      bubble.textContent = `Error: ${err.message}`;
      bubble.classList.add("error");
      bubble.dataset.done = "1";
      history.pop();
    }
    sendBtn.disabled = false;
  };
  sendBtn.addEventListener("click", send);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
  return card("Chat", "through the OpenAI-compatible API, streamed", el("div", { class: "toolbar" }, el("label", { for: "chat-model" }, "Model"), select),
    log, el("div", { class: "row" }, el("div", { class: "grow" }, input), sendBtn));
}

function drawStrip(canvas, vector) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * ratio; canvas.height = h * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const peak = Math.max(1e-9, ...vector.map(Math.abs));
  const step = w / vector.length;
  g.fillStyle = "#e4e7ec"; g.fillRect(0, h / 2, w, 1);
  vector.forEach((v, i) => {
    const len = (Math.abs(v) / peak) * (h / 2 - 3);
    g.fillStyle = v >= 0 ? "#4f46e5" : "#d92d20";
    g.fillRect(i * step, v >= 0 ? h / 2 - len : h / 2 + 1, Math.max(1, step - 0.5), len);
  });
}

function embedCard(embedders, available) {
  if (!available) return card("Embed", null, notice("This build has no v2 inference API.", "info"));
  if (!embedders.length) return card("Embed", null, notice("No embedding model is configured on this server.", "info"));
  const select = modelSelect(embedders, "embed-model");
  const input = el("input", { type: "text", id: "embed-input", value: "A sealed model serves from memory only." });
  const button = el("button", { class: "btn btn-primary", id: "embed-send" }, "Embed");
  const result = el("div", { id: "embed-result" });
  let previous = null;
  const run = async () => {
    const text = input.value.trim();
    if (!text) return;
    button.disabled = true;
    try {
      const model = select.value;
      const meta = await api(`/api/playground/v2/models/${encodeURIComponent(model)}`);
      const textInputs = meta.inputs.filter((i) => i.datatype === "BYTES");
      if (textInputs.length !== 1 || meta.inputs.length !== 1)
        throw new ApiError(400, { error: `model ${model} takes ${meta.inputs.map((i) => `${i.name} (${i.datatype})`).join(", ")}, not one text input` });
      const started = performance.now();
      const r = await api(`/api/playground/v2/models/${encodeURIComponent(model)}/infer`, {
        method: "POST", json: { inputs: [{ name: textInputs[0].name, datatype: "BYTES", shape: [1], data: [text] }] } });
      const ms = performance.now() - started;
      const out = r.outputs[0];
      const vector = out.data.map(Number);
      const norm = Math.sqrt(vector.reduce((s, v) => s + v * v, 0));
      let similarity = null;
      if (previous && previous.vector.length === vector.length) {
        const dot = vector.reduce((s, v, i) => s + v * previous.vector[i], 0);
        similarity = dot / (norm * previous.norm || 1);
      }
      const canvas = el("canvas", { class: "strip", id: "embed-strip" });
      replace(result,
        el("div", { class: "tiles", style: "margin:12px 0" },
          tile("Dimensions", vector.length, `output ${out.name} · shape [${out.shape.join(", ")}]`),
          tile("L2 norm", norm.toFixed(3), null),
          tile("Round trip", `${ms.toFixed(0)} ms`, "browser → model → browser"),
          similarity === null ? tile("Similarity", "–", "embed another sentence to compare")
            : tile("Cosine similarity", el("span", { class: "sim", id: "embed-similarity" }, similarity.toFixed(3)), `with “${previous.text.slice(0, 40)}”`)),
        canvas, el("div", { class: "legend" }, "each bar is one dimension (blue positive, red negative), scaled to the largest"));
      requestAnimationFrame(() => drawStrip(canvas, vector));
      result.dataset.dims = String(vector.length);
      previous = { text, vector, norm };
    } catch (err) {
      replace(result, notice(`${err.message}${err.hint ? ` — ${err.hint}` : ""}`, "bad"));
    }
    button.disabled = false;
  };
  button.addEventListener("click", run);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") run(); });
  return card("Embed", "a sentence through v2 inference", el("div", { class: "toolbar" }, el("label", { for: "embed-model" }, "Model"), select),
    el("div", { class: "row" }, el("div", { class: "grow" }, input), button), result);
}

async function pagePlayground() {
  try {
    const r = await api("/api/models");
    const ready = (kinds) => r.models.filter((m) => kinds.includes(m.kind));
    replace(content, el("div", { class: "grid grid-2" },
      chatCard(ready(["causal-lm"]), r.playground.includes("openai")),
      embedCard(ready(["embedding"]), r.playground.includes("v2"))));
  } catch (err) { showError(err); }
}

/* -------------------------------------------------------------- OS update */

const OS_STATE_CLASS = { staged: "ok", "up-to-date": "ok", downloading: "warn", rebooting: "warn", failed: "bad" };
const ASSESSMENT_CLASS = { good: "ok", clean: "ok", indeterminate: "warn", bad: "bad" };

function osStatusCard(u) {
  const s = u.status;
  if (!s) return card("Last update", null, el("p", { class: "muted", id: "os-status" }, "No update has run since this boot."));
  const rows = [["state", badge(s.state, OS_STATE_CLASS[s.state] || "")], ["staged version", s.staged || "none"],
    ["source", s.source || "–"], ["started", fmt.datetime(s.started_at)], ["finished", fmt.datetime(s.finished_at)]];
  if (s.error) rows.push(["error", el("span", { class: "mono" }, s.error)]);
  return card("Last update", "the update agent's status", el("dl", { class: "kv", id: "os-status", "data-state": s.state },
    rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    s.log_tail && s.log_tail.length ? el("pre", { class: "mono log-tail" }, s.log_tail.join("\n")) : null);
}

function pageUpdate() {
  const status = el("div", {});
  const message = el("div", { class: "muted", id: "os-message" });
  const source = el("input", { type: "text", id: "os-source", placeholder: "https://updates.example/llmos/ or /media/usb/llmos" });
  const say = (text) => { message.textContent = text; };
  const post = async (path, json, button) => {
    button.disabled = true;
    try {
      const r = await api(path, { method: "POST", json });
      say(r.requested.action === "reboot" ? "Reboot requested." : `Update from ${r.requested.source} requested.`);
    } catch (err) { say(`Refused: ${err.message}${err.hint ? ` — ${err.hint}` : ""}`); }
    button.disabled = false;
    await reload();
  };
  const updateBtn = el("button", { class: "btn btn-primary", id: "os-update", onclick: (e) => post("/api/os-update/update", { source: source.value }, e.currentTarget) }, "Update");
  const reload = async () => {
    const u = await api("/api/os-update");
    const staged = u.status && u.status.staged;
    const rebootBtn = u.can_reboot ? el("button", { class: "btn btn-primary", id: "os-reboot",
      onclick: (e) => { if (confirm(`Reboot into version ${staged}?`)) post("/api/os-update/reboot", {}, e.currentTarget); } },
      `Reboot into version ${staged}`) : null;
    replace(status,
      el("div", { class: "tiles" },
        tile("Running version", u.running || "–", u.running ? "IMAGE_VERSION of this boot" : "not an LLM OS image"),
        tile("Boot assessment", badge(u.assessment, ASSESSMENT_CLASS[u.assessment] || ""), "systemd-bless-boot"),
        tile("Staged version", staged || "none", staged ? "installed, starts at the next boot" : null)),
      u.pending ? notice("A request is waiting for the update agent.", "info") : null,
      rebootBtn ? card("Reboot", "the staged version boots with a limited number of tries; the health gate keeps it or the machine goes back", rebootBtn) : null,
      osStatusCard(u));
  };
  replace(content, status,
    card("Update from a source", "an http(s) URL of the update directory, or a local directory (USB stick)",
      el("div", { class: "row" }, el("div", { class: "grow" }, source), updateBtn), message));
  every(3000, async () => { await reload(); clearError(); });
}

/* -------------------------------------------------------------------- main */

const PAGES = {
  overview: pageOverview, accelerators: pageAccelerators, memory: pageMemory, models: pageModels,
  charts: pageCharts, logs: pageLogs, playground: pagePlayground, update: pageUpdate,
};
refreshPill();
setInterval(refreshPill, 5000);
(PAGES[PAGE] || (() => replace(content, notice(`unknown page ${PAGE}`, "bad"))))();
