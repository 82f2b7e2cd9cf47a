// NetScope dashboard: one WebSocket to ./ws/events, everything rendered with textContent (event
// fields are never parsed as HTML). The DOM is stable on purpose so tests and operators can rely
// on selectors: tiles [data-upstream] with .breaker-state, #feed rows with data-trace-id,
// #degraded-banner, #conn-status[data-state]. See docs/dashboard.md.
// History charts live in charts.js, the request timeline in drill.js; this file feeds them.
"use strict";

(() => {
  const FEED_MAX = 500;
  // The feed samples under sustained load: a burst of FEED_MAX rows shows whole, then at most
  // FEED_RATE rows a second are built (the tiles and charts still count every event).
  const FEED_RATE = 50;
  const FEED_FLUSH_MS = 250;
  const RELOAD_AFTER_DROP_MS = 10000;
  // Runbook anchors (GitHub's, of docs/runbook.md); the server's list wins once loaded.
  const RUNBOOK = {
    url: "dashboard/runbook",
    sections: {
      "INC-01": "inc-01--outbound-timeouts-surge",
      "INC-02": "inc-02--ceph-rgw-write-errors",
      "INC-03": "inc-03--circuit-breaker-open-for-long",
      health: "5-health-checklist-every-5-minutes",
    },
  };
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
    feedSkipped: 0,
    windowS: 900,
    historyFor: 0, // the connection whose history was loaded
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
  let lastFlushAt = 0;
  let feedTokens = FEED_MAX;
  let feedRefilledAt = performance.now();
  let lastDropReload = 0;

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

  // ------------------------------------------------------------------ HTTP API

  // Same credentials as the stream: the page's ?token= as a bearer header (never in a URL
  // that could be logged, except the report link, which a download cannot give a header).
  async function fetchJson(path) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const resp = await fetch(path, { headers, cache: "no-store" });
    if (!resp.ok) {
      let detail = `${resp.status} ${resp.statusText}`;
      try { detail = (await resp.json()).detail || detail; } catch { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return resp.json();
  }

  function runbookHref(section) {
    const anchor = RUNBOOK.sections[section] || RUNBOOK.sections.health;
    return `${RUNBOOK.url}#${anchor}`;
  }

  function setRunbook(link, section) {
    if (link.dataset.runbook !== section || !link.getAttribute("href") || link.getAttribute("href") === "#") {
      link.dataset.runbook = section;
      link.href = runbookHref(section);
      setText(link, section.startsWith("INC-") ? `${section} ›` : "§5 ›");
    }
  }

  function refreshRunbookLinks() {
    for (const link of document.querySelectorAll("a.runbook[data-runbook]")) {
      link.href = runbookHref(link.dataset.runbook);
    }
  }

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
      // Whatever happened while disconnected is in the server's history: load it once the
      // stream has really let us in (an unauthorized socket opens, then closes with 4401).
      if (state.historyFor !== generation) {
        state.historyFor = generation;
        window.NetScopeCharts.reload();
      }
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

  // Figures that change with every message (the seq, the held rows) are written at most four
  // times a second: one text change per message would repaint the page a thousand times.
  let countersTimer = null;
  function counters() {
    if (countersTimer !== null) return;
    countersTimer = setTimeout(() => {
      countersTimer = null;
      setText($("last-seq"), state.lastSeq ? String(state.lastSeq) : "–");
      if (state.paused) setText(pauseButton, `Resume (${held.length} new)`);
      if (state.feedSkipped) {
        $("feed-sampled").hidden = false;
        setText($("feed-skipped"), fmtNum(state.feedSkipped));
      }
    }, 250);
  }

  // Heartbeats arrive every interval_s: silence for three of them means a dead path.
  setInterval(() => {
    if (state.connected && Date.now() - state.lastMessageAt > 3000 * state.heartbeatS) setStatus("stale");
  }, 1000);

  // ------------------------------------------------------------------ events

  function onEvent(ev) {
    if (typeof ev.seq === "number") {
      state.lastSeq = ev.seq;
      counters();
    }
    switch (ev.type) {
      case "summary": onSummary(ev); break;
      case "call":
        if (ev.upstream) tile(ev.upstream);
        addRow(() => callRow(ev));
        break;
      case "retry": addRow(() => retryRow(ev)); break;
      case "breaker":
        setBreaker(ev.upstream, ev.to_state);
        window.NetScopeCharts.onBreaker(ev);
        addRow(() => systemRow(ev, ev.upstream, `breaker ${ev.from_state} → ${ev.to_state}`, ev.reason, `state-${ev.to_state}`), true);
        break;
      case "degraded":
        setDegraded(ev.degraded, ev.reason);
        window.NetScopeCharts.onDegraded(ev);
        addRow(() => systemRow(ev, "audit", ev.degraded ? "degraded mode ON" : "degraded mode off", ev.reason, ev.degraded ? "bad" : "good"), true);
        break;
      case "backpressure":
        setPaused(ev.paused ? ev.reason : null);
        addRow(() => systemRow(ev, "ingest", ev.paused ? "ingest paused" : "ingest resumed", ev.reason, ev.paused ? "warn" : "good"), true);
        break;
      case "dead_letter":
        addRow(() => systemRow(ev, "ingest", "dead-lettered", `${ev.topic}/${ev.partition}/${ev.offset} ${ev.field}: ${ev.reason}`, "bad"));
        break;
      case "audit":
        if (ev.result === "failed") addRow(() => systemRow(ev, "audit", "audit write failed", `${ev.reason} ${ev.detail || ""}`, "bad"));
        break;
      case "history":
        window.NetScopeCharts.onHistory(ev);
        break;
      case "heartbeat":
        if (ev.interval_s) state.heartbeatS = ev.interval_s;
        break;
      case "dropped":
        state.dropped += ev.count;
        $("drops").hidden = false;
        setText($("drops-count"), fmtNum(state.dropped));
        // Lost events may include history updates or band changes: reload, not too often.
        if (Date.now() - lastDropReload > RELOAD_AFTER_DROP_MS) {
          lastDropReload = Date.now();
          window.NetScopeCharts.reload();
        }
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
      t.timeoutsNow = s.timeouts;
      t.errorPctNow = s.error_pct;
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
      setRunbook($("stat-audit").querySelector("a.runbook"), st.spool_bytes > 0 || st.audit_degraded ? "INC-02" : "health");
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
    const link = document.createElement("a");
    link.className = "runbook";
    link.title = "the runbook section for this state";
    const right = document.createElement("span");
    right.className = "tile-head-right";
    right.append(link, badge);
    head.append(h, right);
    const grid = document.createElement("div");
    grid.className = "metrics";
    t = {
      root,
      badge,
      link,
      timeoutsNow: 0,
      errorPctNow: 0,
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
    setRunbook(link, "health");
    return t;
  }

  // The next step for a tile's state: an open (or half-open, or forced) breaker is INC-03,
  // timeouts INC-01, errors over the 2 % line INC-03's root cause; otherwise the checklist.
  function tileSection(t) {
    const s = t.root.dataset.state;
    if (s !== "closed") return "INC-03";
    if (t.timeoutsNow > 0) return "INC-01";
    if (t.errorPctNow > 2) return "INC-03";
    return "health";
  }

  function setBreaker(name, breakerState) {
    if (!name || !breakerState) return;
    const t = tile(name);
    const s = STATES.includes(breakerState) ? breakerState : "unknown";
    t.root.dataset.state = s;
    t.root.dataset.open = String(OPEN_STATES.includes(s));
    t.badge.dataset.state = s;
    setText(t.badge, breakerState);
    setRunbook(t.link, tileSection(t));
  }

  function setDegraded(on, reason) {
    $("degraded-banner").hidden = !on;
    if (reason !== null) setText($("degraded-reason"), reason ? `(${reason})` : "");
  }

  function setPaused(reason) {
    $("paused-banner").hidden = !reason;
    setText($("paused-reason"), reason || "");
    if (reason) {
      const section = reason === "spool_full" ? "INC-02" : reason === "ledger_unavailable" ? "health" : "INC-01";
      setRunbook($("paused-banner").querySelector("a.runbook"), section);
    }
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
    // Where its record is: the drill-down reads that one audit object if memory forgot it.
    tr.dataset.topic = ev.topic ?? "";
    tr.dataset.partition = ev.partition ?? "";
    tr.dataset.offset = ev.offset ?? "";
    tr.dataset.timestampMs = ev.timestamp_ms ?? "";
    tr.dataset.attempts = String(ev.attempts ?? "");
    tr.classList.add("clickable");
    tr.title = "open its timeline";
    return tr;
  }

  // `reason` is the machine word (budget, deadline, retryable); `detail` says it for people.
  function retryRow(ev) {
    const why = ev.detail || ev.reason;
    const what = ev.denied ? `retry denied: ${why}` : `retry #${ev.attempt} in ${fmtMs(ev.delay_ms)}`;
    const tr = retryCells(ev, what, why);
    if (!ev.denied) { tr.classList.add("clickable"); tr.title = "open its timeline"; }
    return tr;
  }

  function retryCells(ev, what, why) {
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

  // A token bucket: FEED_MAX rows of burst, FEED_RATE a second sustained. State changes
  // (`always`) are rare and always shown. Rows not shown are never built.
  function takeFeedToken() {
    const now = performance.now();
    feedTokens = Math.min(FEED_MAX, feedTokens + ((now - feedRefilledAt) / 1000) * FEED_RATE);
    feedRefilledAt = now;
    if (feedTokens < 1) return false;
    feedTokens -= 1;
    return true;
  }

  function addRow(make, always = false) {
    if (!always && !takeFeedToken()) {
      state.feedSkipped += 1;
      counters();
      return;
    }
    pushRow(make());
  }

  function pushRow(tr) {
    if (state.paused) {
      held.push(tr);
      if (held.length > FEED_MAX) held = held.slice(-FEED_MAX);
      counters();
      return;
    }
    toRender.push(tr);
    if (toRender.length > FEED_MAX) toRender = toRender.slice(-FEED_MAX);
    if (!frameRequested) {
      frameRequested = true;
      // The first row of a quiet spell shows at once; under load rows are inserted in
      // batches, at most FEED_FLUSH_MS apart: each insertion relays and repaints the table.
      const wait = Math.max(0, lastFlushAt + FEED_FLUSH_MS - performance.now());
      setTimeout(() => requestAnimationFrame(flush), wait);
    }
  }

  // At hundreds of events per second, a few DOM insertions a second keep the page responsive.
  function flush() {
    frameRequested = false;
    lastFlushAt = performance.now();
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

  // ------------------------------------------------------------------ drill-down

  function openTimelineFor(tr) {
    const d = tr.dataset;
    if (!d.traceId && !d.requestId) return;
    const params = { trace_id: d.traceId, request_id: d.requestId };
    if (d.type === "call" && d.offset !== "") {
      Object.assign(params, { topic: d.topic, partition: d.partition, offset: d.offset, timestamp_ms: d.timestampMs });
    }
    window.NetScopeDrill.open(params);
  }

  function openTimelineSearch() {
    const q = search.value.trim();
    if (!q) return;
    const range = window.NetScopeCharts.range();
    const params = { q };
    if (range) Object.assign(params, { from: Math.floor(range[0] * 1000), to: Math.ceil(range[1] * 1000) + 1 });
    window.NetScopeDrill.open(params);
  }

  feed.addEventListener("click", (e) => {
    const tr = e.target.closest("tr.clickable");
    if (tr) openTimelineFor(tr);
  });
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") openTimelineSearch(); });
  $("search-go").addEventListener("click", openTimelineSearch);

  // ------------------------------------------------------------------ history

  function setWindow(seconds) {
    state.windowS = seconds;
    for (const b of document.querySelectorAll("#window button")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.window) === seconds));
    }
    window.NetScopeCharts.setWindow(seconds);
  }

  function onHistoryLoaded(model, err) {
    const status = $("history-status");
    if (err) {
      status.dataset.state = "error";
      setText(status, `history: ${err.message || err}`);
      return;
    }
    status.dataset.state = "ok";
    setText(status, `every ${model.step} s · last ${Math.round(model.windowS / 60)} min`);
    if (model.runbook) {
      RUNBOOK.url = model.runbook.url;
      RUNBOOK.sections = { ...RUNBOOK.sections, ...model.runbook.sections };
      refreshRunbookLinks();
    }
    $("report-link").hidden = !model.audit;
  }

  // `netscope report` for the window on screen; set at click time, so it is the window now.
  $("report-link").addEventListener("click", (e) => {
    const range = window.NetScopeCharts.range();
    if (!range) { e.preventDefault(); return; }
    const url = new URL("api/report", location.href);
    url.searchParams.set("from", String(Math.floor(range[0] * 1000)));
    url.searchParams.set("to", String(Math.ceil(range[1] * 1000) + 1));
    if (token) url.searchParams.set("token", token);
    e.currentTarget.href = url.pathname + url.search;
  });
  for (const b of document.querySelectorAll("#window button")) {
    b.addEventListener("click", () => setWindow(Number(b.dataset.window)));
  }
  window.NetScopeCharts.init({
    container: $("panels"), fetchJson, onLoaded: onHistoryLoaded, windowS: state.windowS,
  });
  window.NetScopeDrill.init({ fetchJson });
  state.history = window.NetScopeCharts.model;
  state.charts = window.NetScopeCharts.stats;
  state.drill = window.NetScopeDrill.state;
  refreshRunbookLinks();
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
      for (const tr of rows) pushRow(tr);
    }
  });

  if (state.serverFilter.trace_id) search.value = state.serverFilter.trace_id;
  connect();
})();
