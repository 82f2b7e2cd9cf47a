// NetScope drill-down: one request's whole timeline (GET api/timeline), opened by a click on a
// feed row or a search. The server answers from memory when the request is recent, else from
// its audit object, else by searching the window's audit; the panel says which. Everything is
// rendered with textContent. Selectors: docs/dashboard.md, "Drill-down".
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SOURCES = {
    memory: "from memory (live)",
    audit_object: "from its audit object",
    audit_scan: "from a search of the audit",
    none: "not found",
  };
  let fetchJson = null;
  let generation = 0;
  const state = { open: false, params: null, body: null };

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const fmtTime = (t) => {
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  };
  const fmtS = (s) => (s === null || s === undefined ? "" : s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(1)} ms`);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setStatus(kind, text) {
    const s = $("drill-status");
    s.dataset.state = kind;
    s.textContent = text;
  }

  function close() {
    generation += 1;
    state.open = false;
    $("drill").hidden = true;
  }

  async function open(params) {
    const gen = ++generation;
    state.open = true;
    state.params = params;
    state.body = null;
    const panel = $("drill");
    panel.hidden = false;
    panel.dataset.source = "";
    $("drill-calls").replaceChildren();
    $("drill-rows").replaceChildren();
    setStatus("loading", "loading…");
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
    }
    try {
      const body = await fetchJson(`api/timeline?${query}`);
      if (gen !== generation) return;
      state.body = body;
      render(body);
    } catch (err) {
      if (gen !== generation) return;
      setStatus("error", err.message || String(err));
    }
  }

  function render(body) {
    const panel = $("drill");
    panel.dataset.source = body.source;
    const n = body.calls.length;
    if (!n) {
      setStatus("empty", "no record of it in memory or in the audit of this window");
    } else {
      const more = body.truncated ? " (more calls than shown)" : "";
      setStatus("ok", `${n} call${n > 1 ? "s" : ""}, ${SOURCES[body.source] || body.source}${more}`);
    }
    for (const problem of body.unreadable || []) setStatus("warn", `skipped unreadable object ${problem}`);
    const calls = document.createDocumentFragment();
    for (const c of body.calls) calls.append(callBox(c));
    $("drill-calls").replaceChildren(calls);
    const rows = document.createDocumentFragment();
    for (const r of body.rows) rows.append(rowOf(r));
    $("drill-rows").replaceChildren(rows);
  }

  function field(dl, name, value) {
    const dt = el("dt", "", name);
    const dd = el("dd", "id", value ?? "–");
    dd.dataset.field = name;
    dl.append(dt, dd);
  }

  function callBox(c) {
    const box = el("div", "drill-call");
    box.dataset.requestId = c.request_id || "";
    box.dataset.traceId = c.trace_id || "";
    box.dataset.idempotencyKey = c.idempotency_key || "";
    box.dataset.outcome = c.outcome;
    const head = el("div", "head");
    head.append(
      el("span", `outcome outcome-${c.outcome}`, c.outcome),
      el("span", "", c.upstream || "(no upstream)"),
      el("span", "muted", c.status ?? c.error_class ?? ""),
      el("span", "muted", `${c.attempts} attempt${c.attempts === 1 ? "" : "s"}`),
      el("span", "muted", fmtS(c.latency_s)),
    );
    const dl = el("dl");
    field(dl, "trace_id", c.trace_id);
    field(dl, "request_id", c.request_id);
    field(dl, "idempotency_key", c.idempotency_key);
    field(dl, "kafka", `${c.kafka.topic}/${c.kafka.partition}/${c.kafka.offset}`);
    field(dl, "run", c.run);
    if (c.error_detail) field(dl, "error_detail", c.error_detail);
    const where = c.audit_object;
    const audit = el("div", "audit-object");
    audit.dataset.where = where ? where.where : "unknown";
    if (!where) audit.textContent = "audit object: not looked up (no store attached)";
    else if (where.where === "store") audit.textContent = `audit object: ${where.key}`;
    else audit.textContent = `audit object: ${where.detail || where.where}`;
    if (where && where.key) audit.dataset.key = where.key;
    box.append(head, dl, audit);
    return box;
  }

  function rowOf(r) {
    const tr = el("tr", `drill-row kind-${r.kind}`);
    tr.dataset.kind = r.kind;
    if (r.kind === "attempt") tr.dataset.attempt = r.what.split(" ").pop();
    if (r.status !== undefined && r.status !== null) tr.dataset.status = String(r.status);
    if (r.breaker) tr.dataset.breaker = r.breaker;
    const status = r.status ?? r.error_class ?? (r.kind === "control" ? r.reason ?? "" : "");
    const duration = r.kind === "attempt" ? r.duration_s : r.kind === "call" ? r.latency_s : null;
    const what = r.kind === "call" ? `${r.what} (${r.upstream || "–"})` : r.what;
    const cells = [
      [fmtTime(r.at), "time"],
      [r.kind, "kind"],
      [what, r.kind === "call" ? `outcome outcome-${r.what}` : ""],
      [status, "status"],
      [fmtS(duration), "num"],
      [r.breaker ? r.breaker : r.kind === "control" ? "" : "–", r.breaker ? `state-${r.breaker}` : ""],
      [r.retry || "", "retry"],
      [r.run, "muted"],
    ];
    for (const [text, cls] of cells) tr.append(el("td", cls, text));
    return tr;
  }

  window.NetScopeDrill = {
    state,
    init(opts) {
      fetchJson = opts.fetchJson;
      $("drill-close").addEventListener("click", close);
      document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.open) close(); });
    },
    open,
    close,
  };
})();
