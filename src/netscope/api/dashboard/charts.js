// NetScope dashboard history: the server keeps the last hour (GET api/history); the page loads
// the window it shows, merges the WebSocket's `history` events (the newest slots, once a
// second) and redraws at most once a second, never while the tab is hidden. Charts are uPlot
// (bundled); the breaker and degraded-mode bands are DOM lanes under their charts, one
// segment per state with its exact times, so tests and operators can read them.
// Selectors and the data format: docs/dashboard.md, "History".
"use strict";

(() => {
  const CHART_HEIGHT = 92;
  const Y_AXIS_SIZE = 56;
  const Y_AXIS_RIGHT = 76;
  const DRAW_EVERY_MS = 1000;
  const COUNT_GROUPS = new Set(["outcomes", "timeouts", "retries", "audit"]);
  const GAUGES = ["queue_depth", "in_flight", "spool_bytes", "spool_pending"];
  // Bottom of the stack first: what worked, then what failed upstream, then refusals.
  const OUTCOME_ORDER = [
    "success", "duplicate_skipped", "duplicate_in_progress", "http_error", "connect_error",
    "protocol_error", "timeout_connect", "timeout_read", "deadline_exceeded",
    "rejected_circuit_open", "rejected_rate_limited", "ledger_unavailable", "invalid",
  ];
  const COLOR = {
    success: "#2ea043", duplicate_skipped: "#58a6ff", duplicate_in_progress: "#388bfd",
    http_error: "#f85149", connect_error: "#ff7b72", protocol_error: "#da3633",
    timeout_connect: "#e3b341", timeout_read: "#d29922", deadline_exceeded: "#9e6a03",
    rejected_circuit_open: "#a371f7", rejected_rate_limited: "#8957e5",
    ledger_unavailable: "#d2a8ff", invalid: "#6e7681",
    p50: "#58a6ff", p95: "#d29922", p99: "#f85149", target: "#8b98a5",
    connect: "#e3b341", read: "#d29922", deadline: "#9e6a03",
    scheduled: "#58a6ff", denied: "#f85149",
    queue_depth: "#58a6ff", in_flight: "#2ea043", capacity: "#8b98a5",
    store: "#2ea043", spool: "#d29922", drained: "#58a6ff", failed: "#f85149",
    spool_bytes: "#f85149", error: "#f85149", threshold: "#f85149",
  };
  const LAG_COLORS = ["#58a6ff", "#2ea043", "#d29922", "#a371f7", "#f85149", "#39c5cf", "#db61a2", "#e3b341"];
  const AXIS = {
    stroke: "#8b98a5",
    grid: { stroke: "#222a33", width: 1 },
    ticks: { stroke: "#2a333d", width: 1 },
    font: "11px system-ui, sans-serif",
  };

  // ------------------------------------------------------------------ formatting

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const fmtClock = (t, ms = false) => {
    const d = new Date(t * 1000);
    const s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return ms ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
  };
  const fmtShort = (v) => {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
    if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
    return v.toFixed(a >= 10 ? 1 : 2);
  };
  const fmtBytes = (b) => {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i += 1; }
    return `${i === 0 ? Math.round(b) : b.toFixed(1)} ${units[i]}`;
  };
  // A reason as the caption shows it: its first line, without a client's debug dump.
  const brief = (why) => {
    const line = String(why).split("Debug source:")[0].split("\n")[0].trim();
    return line.length > 90 ? `${line.slice(0, 89)}…` : line;
  };
  const fmtMs = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${fmtShort(v)} ms`);

  // ------------------------------------------------------------------ the model

  // The server's snapshot, kept as plain arrays (one value per slot of `step` seconds, the
  // first at `start`), and the bands as {initial, changes: [[t, state, reason], ...]}.
  const model = {
    loaded: false, windowS: 900, step: 2, start: 0, n: 0, now: 0,
    errorOutcomes: new Set(), up: {}, inst: null, runbook: null, audit: false,
  };

  const filled = (n, count) => new Array(n).fill(count ? 0 : null);

  function eachSeries(fn) {
    for (const u of Object.values(model.up)) {
      for (const group of ["outcomes", "latency", "timeouts", "retries"]) {
        for (const values of Object.values(u[group])) fn(values, COUNT_GROUPS.has(group));
      }
    }
    const inst = model.inst;
    for (const name of GAUGES) fn(inst[name], false);
    for (const values of Object.values(inst.lag)) fn(values, false);
    for (const values of Object.values(inst.audit)) fn(values, true);
  }

  function emptyUpstream() {
    return {
      outcomes: {}, latency: {}, timeouts: {}, retries: {}, target_p95_s: null,
      breaker: { initial: "closed", changes: [] },
    };
  }

  function load(snap, windowS) {
    model.windowS = windowS;
    model.step = snap.step_s;
    model.start = snap.start;
    model.n = snap.n;
    model.now = snap.now;
    model.errorOutcomes = new Set(snap.error_outcomes);
    model.runbook = snap.runbook || null;
    model.audit = Boolean(snap.audit);
    model.up = {};
    for (const [name, u] of Object.entries(snap.upstreams)) {
      model.up[name] = {
        outcomes: u.outcomes, latency: u.latency, timeouts: u.timeouts, retries: u.retries,
        target_p95_s: u.target_p95_s, breaker: u.breaker,
      };
    }
    const inst = snap.instance;
    model.inst = {
      queue_capacity: inst.queue_capacity, lag: inst.lag, audit: inst.audit, degraded: inst.degraded,
    };
    for (const name of GAUGES) model.inst[name] = inst[name];
    model.loaded = true;
  }

  // Make room for slots up to `lastSlot` and forget what left the window.
  function advance(lastSlot) {
    const step = model.step;
    let first = Math.round(model.start / step);
    const last = first + model.n - 1;
    if (lastSlot > last) {
      const grow = lastSlot - last;
      eachSeries((values, count) => { for (let i = 0; i < grow; i += 1) values.push(count ? 0 : null); });
      model.n += grow;
    }
    const keep = Math.ceil(model.windowS / step);
    if (model.n > keep) {
      const drop = model.n - keep;
      eachSeries((values) => values.splice(0, drop));
      model.n = keep;
      first += drop;
      model.start = first * step;
    }
    return first;
  }

  function mergeGroup(target, src, count, offset) {
    for (const [key, values] of Object.entries(src)) {
      let arr = target[key];
      if (!arr) arr = target[key] = filled(model.n, count);
      values.forEach((v, j) => { if (offset + j >= 0 && offset + j < arr.length) arr[offset + j] = v; });
    }
  }

  // A `history` event: the newest slots (the one just finished, and the current one).
  function merge(tail) {
    if (!model.loaded || tail.step_s !== model.step) return false;
    const tailFirst = Math.round(tail.start / model.step);
    const first = advance(tailFirst + tail.n - 1);
    const offset = tailFirst - first;
    model.now = Math.max(model.now, tail.now);
    let added = false;
    for (const [name, src] of Object.entries(tail.upstreams)) {
      if (!model.up[name]) added = true;
      const u = model.up[name] || (model.up[name] = emptyUpstream());
      for (const group of ["outcomes", "latency", "timeouts", "retries"]) {
        mergeGroup(u[group], src[group], COUNT_GROUPS.has(group), offset);
      }
      u.target_p95_s = src.target_p95_s;
      heal(u.breaker, src.breaker_state, tail.now);
    }
    const inst = tail.instance;
    mergeGroup(model.inst, Object.fromEntries(GAUGES.map((g) => [g, inst[g]])), false, offset);
    mergeGroup(model.inst.lag, inst.lag, false, offset);
    mergeGroup(model.inst.audit, inst.audit, true, offset);
    model.inst.queue_capacity = inst.queue_capacity;
    heal(model.inst.degraded, inst.degraded_state, tail.now);
    return added ? "added" : true;
  }

  const current = (band) => (band.changes.length ? band.changes[band.changes.length - 1][1] : band.initial);

  function addChange(band, t, state, reason) {
    const changes = band.changes;
    if (changes.length && t < changes[changes.length - 1][0]) {
      const i = changes.findIndex((c) => c[0] > t);
      changes.splice(i, 0, [t, state, reason]);
    } else if (current(band) !== state) {
      changes.push([t, state, reason]);
    }
    while (changes.length && changes[0][0] < model.start) band.initial = changes.shift()[1];
  }

  // Each tail repeats the current states: a band that missed its event (a reconnect, a drop)
  // is corrected at the tail's time instead of lying until the next reload.
  function heal(band, state, t) {
    if (state && current(band) !== state) addChange(band, t, state, "state seen in the history update");
  }

  // ------------------------------------------------------------------ chart data

  const rate = (values) => values.map((v) => (v === null ? null : v / model.step));

  function outcomesSpec(name) {
    const u = model.up[name];
    const present = OUTCOME_ORDER.filter((o) => u.outcomes[o]);
    for (const o of Object.keys(u.outcomes)) if (!present.includes(o)) present.push(o);
    const raw = present.map((o) => rate(u.outcomes[o]));
    const stacked = [];
    let below = null;
    for (const values of raw) {
      const sum = values.map((v, i) => (v || 0) + (below ? below[i] : 0));
      stacked.push(sum);
      below = sum;
    }
    // Drawn from the top of the stack down, each filled to zero: every band keeps its colour.
    const order = present.map((_, i) => i).reverse();
    return {
      key: `outcomes:${present.join(",")}`,
      series: order.map((i) => ({
        label: present[i], stroke: COLOR[present[i]] || "#8b98a5", fill: COLOR[present[i]] || "#8b98a5",
        width: 1, value: (p, v, s, idx) => (idx === null ? "–" : fmtShort(raw[i][idx])),
      })),
      data: order.map((i) => stacked[i]),
      range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1],
      fmt: fmtShort,
    };
  }

  function errorSpec(name) {
    const u = model.up[name];
    const totals = filled(model.n, true);
    const errors = filled(model.n, true);
    for (const [o, values] of Object.entries(u.outcomes)) {
      const isError = model.errorOutcomes.has(o);
      values.forEach((v, i) => { totals[i] += v || 0; if (isError) errors[i] += v || 0; });
    }
    const ratio = totals.map((t, i) => (t ? (100 * errors[i]) / t : null));
    return {
      key: "errors",
      series: [
        { label: "error %", stroke: COLOR.error, width: 2, fill: "rgba(248,81,73,0.12)" },
        { label: "2 % (runbook §8)", stroke: COLOR.threshold, width: 1, dash: [6, 4], points: { show: false } },
      ],
      data: [ratio, ratio.map(() => 2)],
      range: (p, min, max) => [0, Math.max(4, (max || 0) * 1.1)],
      fmt: (v) => `${fmtShort(v)}%`,
    };
  }

  function latencySpec(name) {
    const u = model.up[name];
    const ms = (values) => (values || filled(model.n, false)).map((v) => (v === null ? null : v * 1000));
    const series = ["p50", "p95", "p99"].map((q) => ({ label: q, stroke: COLOR[q], width: q === "p95" ? 2 : 1 }));
    const data = ["p50", "p95", "p99"].map((q) => ms(u.latency[q]));
    if (u.target_p95_s) {
      series.push({ label: `p95 target ${fmtMs(u.target_p95_s * 1000)}`, stroke: COLOR.target, width: 1, dash: [6, 4], points: { show: false } });
      data.push(data[0].map(() => u.target_p95_s * 1000));
    }
    return {
      key: `latency:${series.length}`,
      series: series.map((s) => ({ ...s, value: (p, v) => fmtMs(v) })),
      data,
      // Log scale: a 2 ms p50 and a 1 s target (or a 5 s timeout) are both readable.
      log: true,
      range: (p, min, max) => {
        const lo = Number.isFinite(min) && min > 0 ? 10 ** Math.floor(Math.log10(min)) : 1;
        const hi = Number.isFinite(max) && max > 0 ? 10 ** Math.ceil(Math.log10(max)) : 1000;
        return [lo, Math.max(hi, lo * 10)];
      },
      fmt: (v) => (v >= 1000 ? `${fmtShort(v / 1000)}s` : `${fmtShort(v)}ms`),
    };
  }

  function countsSpec(group, labels) {
    return (name) => {
      const values = model.up[name][group];
      return {
        key: `${group}`,
        series: labels.map((k) => ({ label: `${k}/s`, stroke: COLOR[k], width: 1.5, fill: `${COLOR[k]}22` })),
        data: labels.map((k) => rate(values[k] || filled(model.n, true))),
        range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1],
        fmt: fmtShort,
      };
    };
  }

  function queueSpec() {
    const inst = model.inst;
    const series = [
      { label: "queue depth", stroke: COLOR.queue_depth, width: 2 },
      { label: "in flight", stroke: COLOR.in_flight, width: 1.5 },
    ];
    const data = [inst.queue_depth, inst.in_flight];
    const deepest = Math.max(0, ...inst.queue_depth.filter((v) => v !== null));
    // The capacity line only once the queue gets near it: at 0.1 % it would flatten the chart.
    if (inst.queue_capacity && deepest >= inst.queue_capacity / 4) {
      series.push({ label: `capacity ${fmtShort(inst.queue_capacity)}`, stroke: COLOR.capacity, width: 1, dash: [6, 4], points: { show: false } });
      data.push(inst.queue_depth.map(() => inst.queue_capacity));
    }
    return { key: `queue:${series.length}`, series, data, range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1], fmt: fmtShort };
  }

  function lagSpec() {
    const names = Object.keys(model.inst.lag).sort();
    return {
      key: `lag:${names.join(",")}`,
      series: names.map((n, i) => ({ label: n, stroke: LAG_COLORS[i % LAG_COLORS.length], width: 1.5 })),
      data: names.map((n) => model.inst.lag[n]),
      range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1],
      fmt: fmtShort,
      empty: names.length === 0 ? "no partition assigned yet" : null,
    };
  }

  function auditSpec() {
    const a = model.inst.audit;
    const flows = ["store", "spool", "drained", "failed"];
    const series = flows.map((f) => ({
      label: f === "failed" ? "failed writes/s" : `to ${f === "drained" ? "store from spool" : f} rec/s`,
      stroke: COLOR[f], width: 1.5,
    }));
    series.push({ label: "spool backlog", stroke: COLOR.spool_bytes, width: 2, scale: "bytes", fill: "rgba(248,81,73,0.10)", value: (p, v) => fmtBytes(v) });
    return {
      key: "audit",
      series,
      data: [...flows.map((f) => rate(a[f] || filled(model.n, true))), model.inst.spool_bytes],
      range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1],
      fmt: fmtShort,
      bytesAxis: true,
    };
  }

  const UPSTREAM_CHARTS = [
    ["outcomes", "requests/s by outcome", outcomesSpec],
    ["errors", "error ratio (2 % line: runbook §8)", errorSpec],
    ["latency", "latency p50 / p95 / p99", latencySpec],
    ["timeouts", "timeouts/s by kind (per attempt)", countsSpec("timeouts", ["connect", "read", "deadline"])],
    ["retries", "retries/s", countsSpec("retries", ["scheduled", "denied"])],
  ];
  const INSTANCE_CHARTS = [
    ["queue", "queue depth and in flight", queueSpec],
    ["lag", "consumer lag per partition", lagSpec],
    ["audit", "audit writes vs spool backlog", auditSpec],
  ];

  // ------------------------------------------------------------------ panels

  const panels = new Map(); // key ("instance" or upstream) -> panel
  let container = null;
  let xs = [];
  let xRange = [0, 1];
  const stats = { draws: 0, lastDrawMs: 0, reloads: 0 };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function panel(key, title, specs, bandKind) {
    let p = panels.get(key);
    if (p) return p;
    const root = el("article", "panel");
    root.dataset.panel = key === "instance" ? "instance" : "upstream";
    if (key !== "instance") root.dataset.chartUpstream = key;
    const head = el("header");
    head.append(el("h3", "", title));
    root.append(head);
    const charts = specs.map(([id, caption, build], i) => {
      const fig = el("figure", "chart");
      fig.dataset.chart = id;
      fig.append(el("figcaption", "", caption));
      const plot = el("div", "plot");
      fig.append(plot);
      root.append(fig);
      return { id, fig, plot, build, u: null, key: null, last: i === specs.length - 1 };
    });
    const band = el("div", "band");
    band.dataset.band = bandKind;
    if (key !== "instance") band.dataset.bandUpstream = key;
    const lane = el("div", "lane");
    const caption = el("div", "band-caption muted");
    band.append(el("div", "band-label muted", bandKind === "breaker" ? "breaker" : "audit mode"), lane, caption);
    root.append(band);
    p = { key, root, charts, band, lane, caption, bandKind };
    // Instance first, then upstreams by name: positions do not jump as upstreams appear.
    const after = key === "instance" ? container.firstChild
      : [...container.children].find((c) => c.dataset.chartUpstream && c.dataset.chartUpstream > key);
    container.insertBefore(root, after || null);
    panels.set(key, p);
    return p;
  }

  function chartOptions(c, spec, syncKey) {
    const axes = [
      { ...AXIS, show: c.last, space: 70 },
      // A log axis leaves its minor ticks unlabelled (null).
      { ...AXIS, size: Y_AXIS_SIZE, values: (p, ticks) => ticks.map((v) => (v === null ? "" : spec.fmt(v))) },
    ];
    const scales = { x: { time: true, range: () => xRange }, y: { range: spec.range } };
    if (spec.log) {
      Object.assign(scales.y, { distr: 3, log: 10 });
      // Decades only (1 ms, 10 ms, 100 ms, 1 s): minor log lines would hatch a small chart.
      axes[1].splits = (p, i, min, max) => {
        const out = [];
        for (let e = Math.round(Math.log10(min)); 10 ** e <= max * 1.0001; e += 1) out.push(10 ** e);
        return out;
      };
    }
    if (spec.bytesAxis) {
      axes.push({ ...AXIS, scale: "bytes", side: 1, size: Y_AXIS_RIGHT, grid: { show: false }, values: (p, ticks) => ticks.map((v) => (v === null ? "" : fmtBytes(v))) });
      scales.bytes = { range: (p, min, max) => [0, max > 0 ? max * 1.1 : 1024] };
    }
    return {
      width: Math.max(200, c.fig.clientWidth),
      height: CHART_HEIGHT,
      // The instance panel's charts leave room for the audit chart's right axis: one x scale.
      padding: [6, spec.bytesAxis ? 0 : c.owner === null ? Y_AXIS_RIGHT : 12, c.last ? 0 : 6, 0],
      cursor: { sync: { key: syncKey }, drag: { x: false, y: false }, points: { size: 5 } },
      legend: { live: true },
      scales,
      axes,
      series: [
        { value: (p, v) => (v === null ? "–" : fmtClock(v)) },
        ...spec.series.map((s) => ({ points: { show: false }, spanGaps: false, ...s })),
      ],
    };
  }

  function drawChart(c, syncKey) {
    const spec = c.build(c.owner);
    const data = [xs, ...spec.data.map((values) => values.slice(0, xs.length))];
    c.fig.dataset.empty = spec.empty ? "true" : "false";
    if (!c.u || c.key !== spec.key) {
      if (c.u) c.u.destroy();
      c.u = new uPlot(chartOptions(c, spec, syncKey), data, c.plot);
      c.key = spec.key;
    } else {
      c.u.setData(data);
    }
  }

  // A band: one segment per state, positioned on the chart above it (same time scale).
  function drawBand(p, band, under) {
    const over = under && under.u ? under.u.over : null;
    if (over) {
      p.lane.style.marginLeft = over.style.left;
      p.lane.style.width = over.style.width;
    }
    const [xmin, xmax] = xRange;
    const span = xmax - xmin || 1;
    const segments = [];
    let state = band.initial;
    let from = xmin;
    let reason = "";
    for (const [t, to, why] of band.changes) {
      if (t <= xmin) { state = to; reason = why; continue; }
      if (t >= xmax) break;
      segments.push({ state, from, to: t, reason, atStart: from === xmin });
      state = to; from = t; reason = why;
    }
    segments.push({ state, from, to: xmax, reason, atStart: from === xmin, open: true });
    const frag = document.createDocumentFragment();
    for (const s of segments) {
      const seg = el("div", "seg");
      seg.dataset.state = s.state;
      seg.dataset.from = String(s.from);
      seg.dataset.to = String(s.to);
      if (s.atStart) seg.dataset.sinceWindowStart = "true";
      if (s.open) seg.dataset.ongoing = "true";
      seg.style.left = `${(100 * (s.from - xmin)) / span}%`;
      seg.style.width = `${(100 * (s.to - s.from)) / span}%`;
      const label = s.state.replace("_", "-");
      seg.title = `${label}: ${s.atStart ? "before" : fmtClock(s.from, true)} → ${s.open ? "now" : fmtClock(s.to, true)}${s.reason ? ` (${s.reason})` : ""}`;
      if ((s.to - s.from) / span > 0.08) seg.textContent = label;
      frag.append(seg);
    }
    p.lane.replaceChildren(frag);
    const moves = band.changes.filter(([t]) => t > xmin).slice(-4);
    p.caption.textContent = moves.length
      ? moves.map(([t, to, why]) => `${fmtClock(t, true)} ${to.replace("_", "-")}${why ? ` (${brief(why)})` : ""}`).join(" · ")
      : `${band.initial.replace("_", "-")} all window`;
    p.caption.title = band.changes.map(([t, to, why]) => `${fmtClock(t, true)} ${to} ${why}`).join("\n");
  }

  function draw() {
    if (!model.loaded || !container) return;
    const t0 = performance.now();
    // The current slot is still filling: charts stop at the last finished one; bands run to now.
    const visible = Math.max(1, model.n - 1);
    xs = Array.from({ length: visible }, (_, i) => model.start + i * model.step);
    xRange = [model.start, Math.max(model.now, model.start + model.step)];
    const inst = panel("instance", "instance", INSTANCE_CHARTS, "degraded");
    for (const c of inst.charts) { c.owner = null; drawChart(c, "ns-instance"); }
    drawBand(inst, model.inst.degraded, inst.charts[inst.charts.length - 1]);
    for (const name of Object.keys(model.up).sort()) {
      const p = panel(name, name, UPSTREAM_CHARTS, "breaker");
      for (const c of p.charts) { c.owner = name; drawChart(c, `ns-${name}`); }
      drawBand(p, model.up[name].breaker, p.charts[p.charts.length - 1]);
    }
    stats.draws += 1;
    lastDrawAt = performance.now();
    stats.lastDrawMs = lastDrawAt - t0;
  }

  // ------------------------------------------------------------------ scheduling

  // At most one draw a second, as soon as allowed after new data, never while hidden (the
  // tab catches up in one draw when shown again).
  let dirty = false;
  let drawTimer = null;
  let lastDrawAt = -Infinity;
  // `now`: a new upstream's panel (a handful per process) is laid out without waiting.
  function schedule(now = false) {
    dirty = true;
    if (document.hidden) return;
    if (now && drawTimer !== null) { clearTimeout(drawTimer); drawTimer = null; }
    if (drawTimer !== null) return;
    const wait = now ? 0 : Math.max(0, lastDrawAt + DRAW_EVERY_MS - performance.now());
    drawTimer = setTimeout(() => {
      drawTimer = null;
      if (document.hidden) return;
      requestAnimationFrame(() => { if (dirty) { dirty = false; draw(); } });
    }, wait);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && dirty) schedule(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const p of panels.values()) {
        for (const c of p.charts) if (c.u) c.u.setSize({ width: Math.max(200, c.fig.clientWidth), height: CHART_HEIGHT });
      }
      draw();
    }, 200);
  });

  // ------------------------------------------------------------------ public

  let fetchJson = null;
  let onLoaded = () => {};
  let loading = null;

  async function reload() {
    if (!fetchJson) return;
    const windowS = model.windowS;
    const started = performance.now();
    loading = fetchJson(`api/history?window=${windowS}`);
    const mine = loading;
    try {
      const snap = await mine;
      if (mine !== loading) return; // a newer reload (window change) won
      load(snap, windowS);
      stats.reloads += 1;
      draw(); // a window change or a (re)connection: drawn at once
      dirty = false;
      stats.lastLoadMs = performance.now() - started;
      onLoaded(model, null);
    } catch (err) {
      if (mine === loading) onLoaded(model, err);
    }
  }

  window.NetScopeCharts = {
    model,
    stats,
    init(opts) {
      container = opts.container;
      fetchJson = opts.fetchJson;
      onLoaded = opts.onLoaded || onLoaded;
      model.windowS = opts.windowS || model.windowS;
    },
    reload,
    setWindow(seconds) { model.windowS = seconds; return reload(); },
    onHistory(ev) {
      const merged = merge(ev);
      if (merged) schedule(merged === "added");
    },
    onBreaker(ev) {
      if (!model.loaded || !ev.upstream) return;
      // An upstream first seen here gets its series with the next history event.
      const added = !model.up[ev.upstream];
      const u = model.up[ev.upstream] || (model.up[ev.upstream] = emptyUpstream());
      addChange(u.breaker, ev.ts, ev.to_state, ev.reason || "");
      schedule(added);
    },
    onDegraded(ev) {
      if (!model.loaded) return;
      addChange(model.inst.degraded, ev.ts, ev.degraded ? "degraded" : "normal", ev.reason || "");
      schedule();
    },
    // The window shown, in epoch seconds: what the report link asks for.
    range() { return model.loaded ? [model.start, model.now] : null; },
    drawNow: draw,
  };
})();
