// Arroyo view: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
//
// It reads binary WebSocket messages from /ws (items of a JSON header and a frame's
// values: see arroyo/view/wire.py), draws the newest frame
// with the contrast, scale and colormap chosen, plots the metadata fields picked, and
// shows the run's Start, its Stop and the counters. It reconnects by itself, asking
// with ?from= for what it missed. window.arroyoView is its state (tests read it).
"use strict";

(function () {
  const TYPES = {
    uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array,
    uint32: Uint32Array, int32: Int32Array, float32: Float32Array, float64: Float64Array,
  };
  const STOPS = {
    gray: ["#000000", "#ffffff"],
    viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
      "#6ece58", "#b5de2b", "#fde725"],
    inferno: ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925",
      "#fb9b06", "#f7d13d", "#fcffa4"],
    magma: ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d",
      "#fd9668", "#feca8d", "#fcfdbf"],
  };
  const COLORS = ["#4fb3d9", "#e8a33d", "#5cc98a", "#d96fb3", "#e5534b", "#b3a1ff", "#c9c95c"];
  const MAX_POINTS = 5000;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  const state = {
    epoch: null, lastSeq: 0, connected: false, connections: 0, missed: 0,
    stream: null, runs: {}, start: null, stop: null, status: null,
    image: null, drawn: 0, framesReceived: 0, fields: {}, fieldOrder: [],
    contrast: { lo: 0, hi: 0 }, errors: [],
  };
  window.arroyoView = state;

  for (const id of ["scale", "contrast", "colormap"]) {
    if (params.get(id)) $(id).value = params.get(id);
    $(id).addEventListener("change", () => { drawColorbar(); scheduleDraw(); });
  }
  const wanted = new Set((params.get("plot") || "").split(",").filter(Boolean));

  // -- the connection -------------------------------------------------------------------

  let socket = null;
  let retry = 500;

  function viewSize() {
    const box = $("frame-box").getBoundingClientRect();
    const side = Math.max(box.width, box.height) * (window.devicePixelRatio || 1);
    return Math.max(64, Math.min(8192, Math.ceil(side)));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${location.host}/ws?max_size=${viewSize()}`;
    if (state.epoch) url += `&from=${state.lastSeq + 1}&epoch=${state.epoch}`;
    setConnection("connecting", "connecting");
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => receive(event.data);
    socket.onclose = () => {
      state.connected = false;
      const seconds = (retry / 1000).toFixed(1);
      setConnection("closed", `disconnected: retrying in ${seconds} s`);
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }

  function setConnection(kind, text) {
    const el = $("connection");
    el.className = `state ${kind}`;
    el.textContent = text;
  }

  function receive(data) {
    // One WebSocket message holds one item or several: header length, body length,
    // the JSON header, the body (a frame's values, or nothing).
    const view = new DataView(data);
    const decoder = new TextDecoder();
    let at = 0;
    while (at < data.byteLength) {
      const length = view.getUint32(at);
      const size = view.getUint32(at + 4);
      const header = JSON.parse(decoder.decode(new Uint8Array(data, at + 8, length)));
      const start = at + 8 + length;
      item(header, size ? data.slice(start, start + size) : null);
      at = start + size;
    }
  }

  function item(header, body) {
    if (header.type === "hello") return hello(header);
    if (header.type === "status") return showStatus(header);
    if (header.seq <= state.lastSeq) return; // already shown (a resumed connection)
    state.lastSeq = header.seq;
    if (header.type === "start") return started(header);
    if (header.type === "stop") return stopped(header);
    if (header.type === "event") return eventCame(header, body);
  }

  function hello(header) {
    if (state.epoch && header.epoch !== state.epoch) {
      state.lastSeq = 0; // another server (restarted): its numbers start again
      note("the server restarted: showing what it sends from now on");
    } else if (state.epoch && header.missed) {
      state.missed += header.missed;
      note(`${state.missed} messages came while disconnected and are no longer kept`);
    } else if (state.epoch && header.resumed) {
      note("reconnected: what came meanwhile was sent again");
    }
    state.epoch = header.epoch;
    state.connected = true;
    state.connections += 1;
    retry = 500;
    setConnection("connected", "live");
  }

  function note(text) {
    $("note").textContent = text;
  }

  // -- runs: Start and Stop -------------------------------------------------------------

  function started(header) {
    const message = header.message;
    state.runs[message.stream] = { start: message, stop: null };
    state.stream = message.stream;
    state.start = message;
    state.stop = null;
    for (const name of state.fieldOrder) state.fields[name].points = [];
    $("run-title").textContent = `run ${message.stream}`;
    fillTable($("start-data"), message.data, "no data");
    $("start-when").textContent = `seq ${message.seq}, ${when(message.timestamp)}`;
    fillTable($("stop-data"), null, "the run has not ended");
    $("stop-when").textContent = "";
    drawPlot();
  }

  function stopped(header) {
    const message = header.message;
    const run = state.runs[message.stream] || (state.runs[message.stream] = { start: null });
    run.stop = message;
    if (message.stream !== state.stream && state.stream !== null) return;
    state.stream = message.stream;
    state.stop = message;
    $("run-title").textContent = `run ${message.stream} (ended)`;
    fillTable($("stop-data"), message.data, "no data", true);
    $("stop-when").textContent = `seq ${message.seq}, ${when(message.timestamp)}`;
  }

  function when(ns) {
    return new Date(ns / 1e6).toLocaleTimeString();
  }

  function fillTable(table, data, empty, frames) {
    table.textContent = "";
    if (!data || Object.keys(data).length === 0) {
      const cell = table.insertRow().insertCell();
      cell.className = "empty";
      cell.textContent = empty;
      return;
    }
    const keys = Object.keys(data);
    if (frames) keys.sort((a, b) => (b.startsWith("frames_") - a.startsWith("frames_")));
    for (const key of keys) {
      const row = table.insertRow();
      const th = document.createElement("th");
      th.textContent = key;
      row.appendChild(th);
      const value = data[key];
      row.insertCell().textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      row.dataset.key = key;
      if (frames && key.startsWith("frames_")) {
        row.className = "frames";
        if (key === "frames_missing" && value > 0) row.classList.add("bad");
      }
    }
  }

  // -- events: metadata and frames ------------------------------------------------------

  function eventCame(header, body) {
    const message = header.message;
    if (state.stream === null) {
      state.stream = message.stream;
      $("run-title").textContent = `run ${message.stream}`;
    }
    if (message.stream === state.stream) collect(message);
    if (header.image && body) {
      const Type = TYPES[header.image.dtype];
      state.image = {
        values: new Type(body), width: header.image.width, height: header.image.height,
        factor: header.image.factor, shape: header.image.shape, seq: message.seq,
        stream: message.stream, dtype: message.array ? message.array.dtype : header.image.dtype,
        metadata: message.metadata || {},
      };
      state.framesReceived += 1;
      scheduleDraw();
    } else if (header.image_error) {
      note(`a frame cannot be shown: ${header.image_error}`);
    }
  }

  function collect(message) {
    const flat = {};
    for (const [key, value] of Object.entries(message.metadata || {})) {
      if (typeof value === "number") flat[key] = value;
      else if (value && typeof value === "object" && !Array.isArray(value)) {
        for (const [inner, v] of Object.entries(value)) {
          if (typeof v === "number") flat[`${key}.${inner}`] = v;
        }
      }
    }
    let added = false;
    for (const [name, value] of Object.entries(flat)) {
      let field = state.fields[name];
      if (!field) {
        field = state.fields[name] = { points: [], selected: wanted.has(name), color: null };
        state.fieldOrder.push(name);
        added = true;
      }
      field.points.push([message.seq, value]);
      if (field.points.length > MAX_POINTS) field.points.splice(0, field.points.length - MAX_POINTS);
    }
    if (added) fieldList();
    schedulePlot();
  }

  function fieldList() {
    const box = $("fields");
    box.textContent = "";
    state.fieldOrder.forEach((name, i) => {
      const field = state.fields[name];
      field.color = COLORS[i % COLORS.length];
      const label = document.createElement("label");
      const box2 = document.createElement("input");
      box2.type = "checkbox";
      box2.checked = field.selected;
      box2.dataset.field = name;
      box2.addEventListener("change", () => { field.selected = box2.checked; drawPlot(); });
      const swatch = document.createElement("i");
      swatch.style.background = field.color;
      label.append(box2, swatch, name);
      box.appendChild(label);
    });
  }

  // -- drawing the frame ----------------------------------------------------------------

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; drawFrame(); });
  }

  function lut(name) {
    const stops = STOPS[name] || STOPS.gray;
    const rgb = stops.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
    const out = new Uint8ClampedArray(256 * 4);
    for (let i = 0; i < 256; i++) {
      const x = (i / 255) * (rgb.length - 1);
      const j = Math.min(Math.floor(x), rgb.length - 2);
      const f = x - j;
      for (let c = 0; c < 3; c++) out[i * 4 + c] = Math.round(rgb[j][c] + (rgb[j + 1][c] - rgb[j][c]) * f);
      out[i * 4 + 3] = 255;
    }
    return out;
  }

  function range(values, mode) {
    let lo = Infinity;
    let hi = -Infinity;
    if (mode === "minmax") {
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    } else {
      const step = Math.max(1, Math.floor(values.length / 65536));
      const sample = [];
      for (let i = 0; i < values.length; i += step) {
        const v = values[i];
        if (Number.isFinite(v)) sample.push(v);
      }
      const sorted = Float64Array.from(sample).sort();
      if (sorted.length) {
        lo = sorted[Math.floor(0.005 * (sorted.length - 1))];
        hi = sorted[Math.ceil(0.995 * (sorted.length - 1))];
      }
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { lo: 0, hi: 1 };
    return { lo, hi };
  }

  function drawFrame() {
    const image = state.image;
    if (!image) return;
    const canvas = $("frame");
    if (canvas.width !== image.width || canvas.height !== image.height) {
      canvas.width = image.width;
      canvas.height = image.height;
    }
    canvas.style.display = "block";
    $("no-frame").style.display = "none";
    fit(canvas, image);
    const { lo, hi } = range(image.values, $("contrast").value);
    state.contrast = { lo, hi };
    const log = $("scale").value === "log";
    const span = hi > lo ? hi - lo : 1;
    const logSpan = Math.log1p(span);
    const colors = lut($("colormap").value);
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(image.width, image.height);
    const pixels = out.data;
    const values = image.values;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      let t;
      if (v !== v) { // NaN: shown as dark red
        pixels[i * 4] = 120; pixels[i * 4 + 3] = 255;
        continue;
      }
      const d = v - lo;
      if (d <= 0) t = 0;
      else if (d >= span) t = 1;
      else t = log ? Math.log1p(d) / logSpan : d / span;
      const k = Math.round(t * 255) * 4;
      pixels[i * 4] = colors[k];
      pixels[i * 4 + 1] = colors[k + 1];
      pixels[i * 4 + 2] = colors[k + 2];
      pixels[i * 4 + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    state.drawn += 1;
    $("c-drawn").textContent = state.drawn;
    $("range").textContent = `${fmt(lo)} to ${fmt(hi)}${log ? " (log)" : ""}`;
    const reduced = image.factor > 1 ? `, max of ${image.factor}x${image.factor} blocks` : "";
    const about = Object.entries(image.metadata).slice(0, 4)
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
    $("frame-info").textContent =
      `frame seq ${image.seq}: ${image.shape.join("x")} ${image.dtype}${reduced}  ${about}`;
  }

  function fit(canvas, image) {
    const box = $("frame-box").getBoundingClientRect();
    const scale = Math.min(box.width / image.width, box.height / image.height);
    canvas.style.width = `${Math.floor(image.width * scale)}px`;
    canvas.style.height = `${Math.floor(image.height * scale)}px`;
  }

  function drawColorbar() {
    const canvas = $("colorbar");
    const ctx = canvas.getContext("2d");
    const colors = lut($("colormap").value);
    const bar = ctx.createImageData(canvas.width, canvas.height);
    for (let x = 0; x < canvas.width; x++) {
      const k = Math.round((x / (canvas.width - 1)) * 255) * 4;
      for (let y = 0; y < canvas.height; y++) {
        const p = (y * canvas.width + x) * 4;
        bar.data[p] = colors[k]; bar.data[p + 1] = colors[k + 1];
        bar.data[p + 2] = colors[k + 2]; bar.data[p + 3] = 255;
      }
    }
    ctx.putImageData(bar, 0, 0);
  }

  $("frame").addEventListener("mousemove", (event) => {
    const image = state.image;
    if (!image) return;
    const rect = event.target.getBoundingClientRect();
    const col = Math.floor(((event.clientX - rect.left) / rect.width) * image.width);
    const row = Math.floor(((event.clientY - rect.top) / rect.height) * image.height);
    if (col < 0 || row < 0 || col >= image.width || row >= image.height) return;
    const value = image.values[row * image.width + col];
    const f = image.factor;
    const where = f > 1
      ? `rows ${row * f}-${row * f + f - 1}, cols ${col * f}-${col * f + f - 1} (max)`
      : `row ${row}, col ${col}`;
    $("pixel").textContent = `${where}: ${fmt(value)}`;
  });

  function fmt(v) {
    if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(5);
  }

  // -- the plot -------------------------------------------------------------------------

  let plotPending = false;
  function schedulePlot() {
    if (plotPending) return;
    plotPending = true;
    setTimeout(() => { plotPending = false; drawPlot(); }, 250);
  }

  function drawPlot() {
    const canvas = $("plot");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth * ratio;
    const height = canvas.clientHeight * ratio;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const chosen = state.fieldOrder.filter((n) => state.fields[n].selected && state.fields[n].points.length);
    if (!chosen.length) return;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const name of chosen) {
      for (const [x, y] of state.fields[name].points) {
        if (x < x0) x0 = x; if (x > x1) x1 = x;
        if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y1 += 1; y0 -= 1; }
    const pad = { left: 70 * ratio, right: 10 * ratio, top: 10 * ratio, bottom: 22 * ratio };
    const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
    ctx.strokeStyle = "#2d333d";
    ctx.lineWidth = ratio;
    ctx.strokeRect(pad.left, pad.top, width - pad.left - pad.right, height - pad.top - pad.bottom);
    ctx.fillStyle = "#8b94a3";
    ctx.font = `${11 * ratio}px ui-monospace, monospace`;
    ctx.textAlign = "right";
    ctx.fillText(fmt(y1), pad.left - 4 * ratio, pad.top + 10 * ratio);
    ctx.fillText(fmt(y0), pad.left - 4 * ratio, height - pad.bottom);
    ctx.textAlign = "left";
    ctx.fillText(`seq ${x0}`, pad.left, height - 6 * ratio);
    ctx.textAlign = "right";
    ctx.fillText(`seq ${x1}`, width - pad.right, height - 6 * ratio);
    for (const name of chosen) {
      const field = state.fields[name];
      ctx.strokeStyle = field.color;
      ctx.lineWidth = 1.5 * ratio;
      ctx.beginPath();
      field.points.forEach(([x, y], i) => (i ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
      ctx.stroke();
    }
  }

  // -- counters -------------------------------------------------------------------------

  function showStatus(status) {
    state.status = status;
    const set = (id, text, warn) => {
      const el = $(id);
      el.textContent = text;
      el.classList.toggle("warn", Boolean(warn));
    };
    set("c-received", status.received);
    set("c-frames", status.frames);
    set("c-fps", fmt(status.frames_per_s));
    set("c-mbps", fmt(status.mb_per_s));
    const dropped = status.dropped_frames + (status.dropped_events ? ` (+${status.dropped_events} messages)` : "");
    set("c-dropped", dropped, status.dropped_frames || status.dropped_events);
    const skipped = status.skipped + (status.skipped_events ? ` (+${status.skipped_events} messages)` : "");
    set("c-skipped", skipped, status.skipped || status.skipped_events);
    set("c-gaps", status.run ? status.run.seq_gaps : 0, status.run && status.run.seq_gaps);
    set("c-lost", status.lost, status.lost);
    set("c-dead", status.dead_letters, status.dead_letters);
    set("c-undecodable", status.undecodable, status.undecodable);
    $("c-undecodable").title = status.problem || "";
    set("c-clients", status.clients);
  }

  window.addEventListener("error", (event) => state.errors.push(String(event.message)));
  window.addEventListener("resize", () => { if (state.image) fit($("frame"), state.image); drawPlot(); });
  drawColorbar();
  connect();
})();
