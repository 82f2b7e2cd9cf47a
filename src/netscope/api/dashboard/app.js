// NetScope dashboard: one WebSocket to ./ws/events, everything rendered with textContent (event
// fields are never parsed as HTML). The DOM is stable on purpose so tests and operators can rely
// on selectors: tiles [data-upstream] with .breaker-state, #feed rows with data-trace-id,
// #degraded-banner, #conn-status[data-state]. See docs/dashboard.md.
"use strict";

(() => {
  const FEED_MAX = 500;
  const TRACE_RE = /^[0-9a-f]{32}$/i;
  const SERVER_FILTERS = ["upstream", "outcome", "trace_id", "request_id"];
  const STATES = ["closed", "half_open", "open", "forced_open", "forced_closed"];
  // Both reject every call: a forced-open circuit is as open as a tripped one (metrics.py
  // OPEN_STATES; netscope_circuit_open is 1 in both).
  const OPEN_STATES = ["open", "forced_open"];

  const pageParams = new URLSearchParams(location.search);
  const token = pageParams.get("token");

  // Exposed for debugging and browser tests; not an API.
  const state = {
    connected: false,
    status: "connecting",
    paused: false,
    lastSeq: 0,
    dropped: 0,
    received: 0,
    heartbeatS: 10,
    lastMessageAt: 0,
    serverFilter: {},
    generation: 0,
  };
  window.netscope = state;
  for (const key of SERVER_FILTERS) {
    const value = pageParams.get(key);
    if (value) state.serverFilter[key] = value;
  }

  const $ = (id) => document.getElementById(id);
  const feed = $("feed");
  const search = $("search");
  const pauseButton = $("pause");
  const tiles = new Map(); // upstream -> {root, fields}
  let ws = null;
  let retryMs = 1000;
  let retryTimer = null;
  let toRender = []; // rows built but not yet in the DOM (rendered once per frame)
  let held = []; // rows received while paused
  let frameRequested = false;

  // ------------------------------------------------------------------ formatting

  const fmtTime = (ts) => {
    const d = new Date(ts * 1000);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  };
  const splitMs = (ms) => {
    if (ms === null || ms === undefined) return ["–", ""];
    if (ms >= 1000) return [(ms / 1000).toFixed(2), "s"];
    return [ms >= 100 ? String(Math.round(ms)) : ms.toFixed(1), "ms"];
  };
  const fmtMs = (ms) => {
    if (ms === null || ms === undefined) return "–";
    const [n, unit] = splitMs(ms);
    return `${n} ${unit}`;
  };
  const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const fmtRate = (r) => (r === null || r === undefined ? "–" : r >= 100 ? Math.round(r).toString() : r.toFixed(1));
  const fmtBytes = (b) => {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i += 1; }
    return `${i === 0 ? b : b.toFixed(1)} ${units[i]}`;
  };
  const fmtAge = (s) => {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${(s / 3600).toFixed(1)} h`;
  };
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

  // ------------------------------------------------------------------ connection

  function setStatus(status) {
    state.status = status;
    const el = $("conn-status");
    el.dataset.state = status;
    setText(el, status);
  }

  function wsUrl() {
    const url = new URL("ws/events", location.href); // /dashboard -> /ws/events
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    if (token) url.searchParams.set("token", token);
    for (const [key, value] of Object.entries(state.serverFilter)) {
      if (value) url.searchParams.set(key, value);
    }
    return url.toString();
  }

  function showFilter() {
    const parts = Object.entries(state.serverFilter).filter(([, v]) => v).map(([k, v]) => `${k}=${v}`);
    const el = $("filter-status");
    el.hidden = parts.length === 0;
    setText(el, parts.length ? `filter ${parts.join(" ")}` : "");
  }

  function connect() {
    clearTimeout(retryTimer);
    if (ws) {
      ws.onclose = null; // an intentional reconnect is not a failure
      ws.close(1000, "reconnect");
    }
    const generation = ++state.generation;
    state.connected = false;
    setStatus("connecting");
    showFilter();
    const socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = () => {
      if (generation !== state.generation) return;
      state.connected = true;
      state.lastMessageAt = Date.now();
      retryMs = 1000;
      setStatus("live");
    };
    socket.onmessage = (msg) => {
      if (generation !== state.generation) return;
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      state.lastMessageAt = Date.now();
      state.received += 1;
      if (state.status !== "live") setStatus("live");
      onEvent(ev);
    };
    socket.onclose = (e) => {
      if (generation !== state.generation) return;
      state.connected = false;
      if (e.code === 4401) {
        setStatus("unauthorized");
        retryTimer = setTimeout(connect, 15000); // the token will not fix itself quickly
        return;
      }
      setStatus(e.code === 4403 ? "forbidden" : "reconnecting");
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  // Heartbeats arrive every interval_s: silence for three of them means a dead path.
  setInterval(() => {
    if (state.connected && Date.now() - state.lastMessageAt > 3000 * state.heartbeatS) setStatus("stale");
  }, 1000);

  // ------------------------------------------------------------------ events

  function onEvent(ev) {
    if (typeof ev.seq === "number") {
      state.lastSeq = ev.seq;
      setText($("last-seq"), String(ev.seq));
    }
    switch (ev.type) {
      case "summary": onSummary(ev); break;
      case "call":
        if (ev.upstream) tile(ev.upstream);
        addRow(callRow(ev));
        break;
      case "retry": addRow(retryRow(ev)); break;
      case "breaker":
        setBreaker(ev.upstream, ev.to_state);
        addRow(systemRow(ev, ev.upstream, `breaker ${ev.from_state} → ${ev.to_state}`, ev.reason, `state-${ev.to_state}`));
        break;
      case "degraded":
        setDegraded(ev.degraded, ev.reason);
        addRow(systemRow(ev, "audit", ev.degraded ? "degraded mode ON" : "degraded mode off", ev.reason, ev.degraded ? "bad" : "good"));
        break;
      case "backpressure":
        setPaused(ev.paused ? ev.reason : null);
        addRow(systemRow(ev, "ingest", ev.paused ? "ingest paused" : "ingest resumed", ev.reason, ev.paused ? "warn" : "good"));
        break;
      case "dead_letter":
        addRow(systemRow(ev, "ingest", "dead-lettered", `${ev.topic}/${ev.partition}/${ev.offset} ${ev.field}: ${ev.reason}`, "bad"));
        break;
      case "audit":
        if (ev.result === "failed") addRow(systemRow(ev, "audit", "audit write failed", `${ev.reason} ${ev.detail || ""}`, "bad"));
        break;
      case "heartbeat":
        if (ev.interval_s) state.heartbeatS = ev.interval_s;
        break;
      case "dropped":
        state.dropped += ev.count;
        $("drops").hidden = false;
        setText($("drops-count"), fmtNum(state.dropped));
        break;
      default: break; // newer event types: ignore, the protocol is additive
    }
  }

  function onSummary(ev) {
    let rate = 0, calls = 0, errors = 0;
    for (const [name, s] of Object.entries(ev.upstreams || {})) {
      const t = tile(name);
      t.rate.set(fmtRate(s.rate_per_s), "/s");
      t.errorPct.set(s.error_pct.toFixed(1), "%");
      // Runbook thresholds: > 2 % errors is a major alert.
      t.errorPct.box.dataset.level = s.error_pct > 2 ? "bad" : s.error_pct > 0 ? "warn" : "ok";
      t.timeouts.set(fmtNum(s.timeouts));
      t.timeouts.box.dataset.level = s.timeouts > 0 ? "warn" : "ok";
      t.p95.set(...splitMs(s.p95_ms));
      t.p99.set(...splitMs(s.p99_ms));
      setText(t.totals, `window ${ev.window_s} s · since start: ${fmtNum(s.calls_total)} calls, ${fmtNum(s.errors_total)} errors, ${fmtNum(s.timeouts_total)} timeouts`);
      setBreaker(name, s.breaker);
      rate += s.rate_per_s; calls += s.calls; errors += s.errors;
    }
    setText($("total-rate"), fmtRate(rate));
    setText($("total-errors"), calls ? `${(100 * errors / calls).toFixed(1)} %` : "–");

    const st = ev.status || {};
    if ("queue_depth" in st) {
      setText($("queue-depth"), fmtNum(st.queue_depth));
      setText($("queue-capacity"), fmtNum(st.queue_capacity));
      const pct = st.queue_capacity ? Math.min(100, (100 * st.queue_depth) / st.queue_capacity) : 0;
      $("queue-bar").style.width = `${pct}%`;
      $("stat-queue").dataset.level = pct >= 80 ? "bad" : pct >= 50 ? "warn" : "ok";
    }
    if ("consumer_lag" in st) setText($("consumer-lag"), fmtNum(st.consumer_lag));
    if ("spool_bytes" in st) {
      setText($("spool-bytes"), fmtBytes(st.spool_bytes));
      setText($("spool-age"), fmtAge(st.spool_oldest_age_s));
      $("stat-audit").dataset.level = st.spool_bytes > 0 ? "warn" : "ok";
    }
    if ("audit_degraded" in st) setDegraded(Boolean(st.audit_degraded), null);
    if ("paused_reason" in st) setPaused(st.paused_reason);
    for (const [name, s] of Object.entries(st.breakers || {})) setBreaker(name, s);
  }

  // ------------------------------------------------------------------ tiles

  // A figure is a number (.value) and its unit (.unit), so the number can be large and bold.
  function metric(parent, cls, label) {
    const box = document.createElement("div");
    box.className = `metric ${cls}`;
    const line = document.createElement("div");
    line.className = "figure";
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = "–";
    const unit = document.createElement("span");
    unit.className = "unit";
    line.append(value, unit);
    const l = document.createElement("div");
    l.className = "label";
    l.textContent = label;
    box.append(line, l);
    parent.append(box);
    return {
      box,
      set(text, unitText = "") { setText(value, text); setText(unit, unitText); },
    };
  }

  function tile(name) {
    let t = tiles.get(name);
    if (t) return t;
    const root = document.createElement("article");
    root.className = "tile";
    root.dataset.upstream = name;
    root.dataset.state = "closed";
    root.dataset.open = "false";
    const head = document.createElement("header");
    const h = document.createElement("h3");
    h.className = "name";
    h.textContent = name;
    const badge = document.createElement("span");
    badge.className = "breaker-state";
    badge.dataset.state = "closed";
    badge.textContent = "closed";
    head.append(h, badge);
    const grid = document.createElement("div");
    grid.className = "metrics";
    t = {
      root,
      badge,
      rate: metric(grid, "rate", "requests"),
      errorPct: metric(grid, "error-pct", "errors"),
      timeouts: metric(grid, "timeouts", "timeouts"),
      p95: metric(grid, "p95", "p95"),
      p99: metric(grid, "p99", "p99"),
    };
    t.totals = document.createElement("div");
    t.totals.className = "totals muted";
    root.append(head, grid, t.totals);
    // Keep tiles sorted by name so positions do not jump as upstreams appear.
    const container = $("upstreams");
    const after = [...container.children].find((c) => c.dataset.upstream > name);
    container.insertBefore(root, after || null);
    tiles.set(name, t);
    return t;
  }

  function setBreaker(name, breakerState) {
    if (!name || !breakerState) return;
    const t = tile(name);
    const s = STATES.includes(breakerState) ? breakerState : "unknown";
    t.root.dataset.state = s;
    t.root.dataset.open = String(OPEN_STATES.includes(s));
    t.badge.dataset.state = s;
    setText(t.badge, breakerState);
  }

  function setDegraded(on, reason) {
    $("degraded-banner").hidden = !on;
    if (reason !== null) setText($("degraded-reason"), reason ? `(${reason})` : "");
  }

  function setPaused(reason) {
    $("paused-banner").hidden = !reason;
    setText($("paused-reason"), reason || "");
  }

  // ------------------------------------------------------------------ feed

  // Rows carry no data-upstream: that attribute means "tile" ([data-upstream="x"] is unique).
  function row(ev, kind, cells) {
    const tr = document.createElement("tr");
    tr.className = `row kind-${kind}`;
    tr.dataset.type = ev.type;
    tr.dataset.traceId = ev.trace_id || "";
    tr.dataset.requestId = ev.request_id || "";
    tr.dataset.seq = String(ev.seq);
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      if (cls) td.className = cls;
      td.textContent = text === null || text === undefined ? "" : String(text);
      tr.append(td);
    }
    return tr;
  }

  function callRow(ev) {
    const tr = row(ev, "call", [
      [fmtTime(ev.ts), "time"],
      [ev.upstream || "–", "upstream"],
      [ev.outcome, `outcome outcome-${ev.outcome}`],
      [ev.status ?? ev.error_class ?? "–", "status"],
      [fmtMs(ev.latency_ms), "num latency"],
      [ev.attempts, "num"],
      [ev.trace_id || "", "id trace"],
      [ev.request_id || "", "id request"],
    ]);
    tr.dataset.outcome = ev.outcome;
    return tr;
  }

  // `reason` is the machine word (budget, deadline, retryable); `detail` says it for people.
  function retryRow(ev) {
    const why = ev.detail || ev.reason;
    const what = ev.denied ? `retry denied: ${why}` : `retry #${ev.attempt} in ${fmtMs(ev.delay_ms)}`;
    return row(ev, "retry", [
      [fmtTime(ev.ts), "time"],
      [ev.upstream || "–", "upstream"],
      [what, "outcome outcome-retry"],
      [ev.denied ? "" : why, "status"],
      ["", "num"],
      [ev.denied ? "" : ev.attempt, "num"],
      [ev.trace_id || "", "id trace"],
      [ev.request_id || "", "id request"],
    ]);
  }

  function systemRow(ev, where, what, detail, cls) {
    const tr = row(ev, "system", [
      [fmtTime(ev.ts), "time"],
      [where, "upstream"],
      [what, `outcome ${cls}`],
      [detail, "detail"],
    ]);
    tr.lastChild.colSpan = 5;
    return tr;
  }

  function matchesSearch(tr) {
    const q = search.value.trim().toLowerCase();
    if (!q) return true;
    return tr.dataset.traceId.toLowerCase().includes(q) || tr.dataset.requestId.toLowerCase().includes(q);
  }

  function addRow(tr) {
    if (state.paused) {
      held.push(tr);
      if (held.length > FEED_MAX) held = held.slice(-FEED_MAX);
      setText(pauseButton, `Resume (${held.length} new)`);
      return;
    }
    toRender.push(tr);
    if (toRender.length > FEED_MAX) toRender = toRender.slice(-FEED_MAX);
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(flush);
    }
  }

  // At hundreds of events per second, one DOM insertion per frame keeps the page responsive.
  function flush() {
    frameRequested = false;
    if (!toRender.length) return;
    const fragment = document.createDocumentFragment();
    for (let i = toRender.length - 1; i >= 0; i -= 1) { // newest first
      const tr = toRender[i];
      tr.hidden = !matchesSearch(tr);
      fragment.append(tr);
    }
    toRender = [];
    feed.insertBefore(fragment, feed.firstChild);
    while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
    setText($("feed-count"), String(feed.childElementCount));
  }

  function applySearch() {
    for (const tr of feed.children) tr.hidden = !matchesSearch(tr);
    // A full trace id also narrows the stream server-side, so the trace's events are not
    // pushed out of the 500-row feed by other traffic.
    const q = search.value.trim().toLowerCase();
    const wanted = TRACE_RE.test(q) ? q : undefined;
    if (state.serverFilter.trace_id !== wanted) {
      if (wanted) state.serverFilter.trace_id = wanted;
      else delete state.serverFilter.trace_id;
      connect();
    }
  }

  search.addEventListener("input", applySearch);
  pauseButton.addEventListener("click", () => {
    state.paused = !state.paused;
    pauseButton.setAttribute("aria-pressed", String(state.paused));
    pauseButton.classList.toggle("active", state.paused);
    if (state.paused) {
      setText(pauseButton, "Resume");
    } else {
      setText(pauseButton, "Pause");
      const rows = held;
      held = [];
      for (const tr of rows) addRow(tr);
    }
  });

  if (state.serverFilter.trace_id) search.value = state.serverFilter.trace_id;
  connect();
})();
