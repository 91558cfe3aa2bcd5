// Draws the figures embedded in the page (JSON in <script type="application/json">),
// re-reads a zoomed window of a run's power at full detail, and polls the live state.
"use strict";

const PLOT_CONFIG = { responsive: true, displaylogo: false };

// Text from the server (names from the database) only ever becomes text, never markup:
// elements are built here and filled through textContent, nothing goes through innerHTML.
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function drawFigures() {
  document.querySelectorAll("div[data-figure]").forEach((div) => {
    const fig = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    Plotly.newPlot(div, fig.data, fig.layout, PLOT_CONFIG);
  });
}

// Zoom on a run's power: fetch that window's curves (smoothed and envelope) so peaks stay
// exact at every scale; traces carry meta [domain, "smooth" | "raw"].
function enableZoom() {
  const div = document.getElementById("fig-power");
  const zoom = document.getElementById("zoom");
  if (!div || !zoom) return;
  const full = div.data.map((t) => ({ x: t.x, y: t.y }));
  const idx = [...div.data.keys()].filter((i) => Array.isArray(div.data[i].meta));
  const shown = document.getElementById("window-shown");
  const fullWindow = shown.textContent;
  div.on("plotly_relayout", async (ev) => {
    if (ev["xaxis.autorange"]) {
      Plotly.restyle(div, { x: idx.map((i) => full[i].x), y: idx.map((i) => full[i].y) }, idx);
      shown.textContent = fullWindow;
      delete div.dataset.zoomed;
      return;
    }
    const range = ev["xaxis.range"] || [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
    const [t0, t1] = range;
    if (t0 === undefined || t1 === undefined) return;
    const params = new URLSearchParams({ t0: String(t0), t1: String(t1) });
    if (zoom.dataset.windowMs) params.set("window_ms", zoom.dataset.windowMs);
    const resp = await fetch(`${zoom.dataset.url}?${params}`);
    if (!resp.ok) return;
    const curves = await resp.json();
    const xs = [], ys = [], at = [];
    for (const i of idx) {
      const [domain, layer] = div.data[i].meta;
      const c = curves[domain];
      if (!c) continue;
      xs.push(layer === "raw" ? c.t_s : c.smooth_t_s);
      ys.push(layer === "raw" ? c.w : c.smooth_w);
      at.push(i);
      shown.textContent = `${c.window_ms} ms`;
    }
    if (!at.length) return;
    Plotly.restyle(div, { x: xs, y: ys }, at);
    div.dataset.zoomed = String(xs[0].length);
  });
}

// The raw envelope, one click away: shows or hides every "raw" trace.
function enableRawToggle() {
  const button = document.getElementById("toggle-raw");
  const div = document.getElementById("fig-power");
  if (!button || !div) return;
  button.addEventListener("click", () => {
    const on = button.getAttribute("aria-pressed") !== "true";
    const raw = [...div.data.keys()].filter((i) => (div.data[i].meta || [])[1] === "raw");
    Plotly.restyle(div, { visible: on }, raw);
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "hide raw envelope" : "show raw envelope";
  });
}

// A new smoothing window reloads the page with ?window_ms= (the form's own submit).
function enableWindowPick() {
  const pick = document.getElementById("window-ms");
  if (pick) pick.addEventListener("change", () => pick.form.submit());
}

function curveTraces(curves, estimate) {
  return Object.entries(curves).map(([domain, c]) => ({
    type: "scatter", mode: "lines", x: c.t_s, y: c.w, line: { width: 1.4 },
    name: `${domain} ${estimate ? "ESTIMATE " : ""}W (${c.window_ms} ms mean)`,
  }));
}

const LIVE_LAYOUT = {
  xaxis: { title: { text: "time since the run's first sample (s)" } },
  yaxis: { title: { text: "power (W)" }, rangemode: "tozero" },
  height: 420, margin: { l: 60, r: 20, t: 40, b: 50 },
};

function energyBadge(energy) {
  return el("span", `badge ${energy.estimate ? "estimate" : "measured"}`, energy.text);
}

// The last stored run's power with its phases: fetched when another run becomes the last.
async function drawLastRun(runId, div) {
  div.dataset.runId = String(runId);   // once per run, also when it has no curve
  const resp = await fetch(`/api/run/${encodeURIComponent(runId)}/figure`);
  if (!resp.ok) return;
  const fig = await resp.json();
  Plotly.react(div, fig.data, Object.assign({}, fig.layout, { height: 380 }), PLOT_CONFIG);
  div.dataset.drawn = String(runId);
}

async function pollLive() {
  const sec = document.getElementById("live");
  if (!sec) return;
  const url = `/api/live?group=${encodeURIComponent(sec.dataset.group)}`;
  const fig = document.getElementById("fig-live");
  const last = document.getElementById("fig-last");
  let polls = 0;
  const tick = async () => {
    try {
      const resp = await fetch(url);
      if (resp.ok) {
        const st = await resp.json();
        polls += 1;
        const p = st.progress;
        const bar = el("div", "progress");
        bar.append(el("div", "bar"), el("span", "label",
          `${p.done}/${p.planned ?? "?"}${p.errors ? " · " + p.errors + " failed" : ""}`));
        bar.firstChild.style.width = `${Number(p.percent) || 0}%`;
        document.getElementById("live-progress").replaceChildren(bar);
        document.getElementById("live-energy").replaceChildren(energyBadge(st.energy));
        document.getElementById("live-eta").textContent = p.finished ? "done" : p.eta;
        document.getElementById("live-status").textContent = st.status;
        const lr = st.last_run;
        document.getElementById("live-last").textContent = lr
          ? `${lr.task_name} / ${lr.provider} / ${lr.workflow_type} rep ${lr.run_number} (${lr.status}), started ${lr.started_at}` : "none yet";
        // UTC ISO-8601, as every time the dashboard shows
        document.getElementById("live-updated").textContent = new Date().toISOString();
        const clipped = Object.entries(st.curve || {}).filter(([, c]) => c.clipped)
          .map(([d, c]) => `${c.clipped} ${d} point(s) above the source's ${c.ceiling_w} W drawn at it`);
        document.getElementById("live-curve-note").textContent = st.curve_note
          || [st.curve_file ? `from ${st.curve_file}` : "", ...clipped].filter(Boolean).join(" · ");
        const fmt = (v) => (v === null || v === undefined ? "–" : v.toPrecision(3));
        document.querySelector("#live-workflows tbody").replaceChildren(...st.workflows.map((w) => {
          const tr = el("tr");
          for (const v of [w.workflow, w.done, w.planned ?? "?", w.errors, fmt(w.mean_run_s)]) tr.append(el("td", null, v));
          return tr;
        }));
        sec.dataset.done = String(p.done);
        sec.dataset.polls = String(polls);
        if (st.curve) {
          const traces = curveTraces(st.curve, st.energy.estimate);
          sec.dataset.curvePoints = String(traces[0].x.length);
          const title = `Run in progress: power so far${st.energy.estimate ? " (ESTIMATE)" : ""}`;
          Plotly.react(fig, traces, Object.assign({ title: { text: title } }, LIVE_LAYOUT), PLOT_CONFIG);
        }
        if (lr && last.dataset.runId !== String(lr.run_id)) await drawLastRun(lr.run_id, last);
      }
    } catch (e) { /* server restarting: try again next tick */ }
    setTimeout(tick, Number(sec.dataset.refreshMs) || 1000);
  };
  tick();
}

// The groups list's filter: rows whose text (id, tags, notes, tasks, arms…) holds every
// word typed, case-insensitive; the rest are hidden (nothing is fetched).
function enableGroupFilter() {
  const box = document.getElementById("group-filter");
  if (!box) return;
  const rows = [...document.querySelectorAll("#groups tbody tr")];
  const count = document.getElementById("group-count");
  box.addEventListener("input", () => {
    const words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const tr of rows) {
      const text = tr.textContent.toLowerCase();
      const keep = words.every((w) => text.includes(w));
      tr.hidden = !keep;
      shown += keep;
    }
    count.textContent = `${shown} of ${rows.length} batch(es)`;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawFigures(); enableZoom(); enableRawToggle(); enableWindowPick(); enableGroupFilter();
  pollLive();
});
