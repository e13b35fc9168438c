// vaekit latent explorer: plain JavaScript over the JSON API (no build step, no dependencies).
"use strict";

const SLIDER_RANGE = 4; // sliders span ±4 prior standard deviations; the map may go further
// Tableau 10: ten hues that stay apart on a white background.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

const state = { info: null, z: [], inFlight: false, pending: false, marker: null };

const $ = (id) => document.getElementById(id);

// A conditional run decodes under the class picked in #label; other runs send no label.
function chosenLabel() {
  return state.info && state.info.classes ? Number($("label").value) : null;
}

function labelQuery() {
  const label = chosenLabel();
  return label === null ? "" : `&label=${label}`;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showError(error) {
  $("status").textContent = error ? String(error.message || error) : "";
}

// Decode the current z; while a request is out, remember that another is due and send only the latest.
async function decode() {
  if (state.inFlight) { state.pending = true; return; }
  state.inFlight = true;
  try {
    const body = await api("/api/decode", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(chosenLabel() === null ? { z: state.z } : { z: state.z, label: chosenLabel() }),
    });
    $("decoded").src = body.image;
    showError(null);
  } catch (error) {
    showError(error);
  } finally {
    state.inFlight = false;
    if (state.pending) { state.pending = false; decode(); }
  }
}

// A VQ-VAE's decoder input is a whole code map (7 x 7 x 16 = 784 numbers): sliders for the most
// informative dimensions only; the others keep what an encoding or a sample set.
const MAX_SLIDERS = 64;

function buildSliders() {
  const container = $("sliders");
  container.textContent = "";
  const shown = state.info.order.slice(0, MAX_SLIDERS);
  if (shown.length < state.info.order.length) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = `sliders for the ${shown.length} dimensions that move most of ${state.info.order.length}`;
    container.append(note);
  }
  for (const dim of shown) {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `z${dim}`;
    // an IAF's or a vMF's KL does not split by dimension: the dimension alone then
    const kl = state.info.kl_per_dim_nats;
    label.innerHTML = `z<sub>${dim}</sub>` + (kl ? ` <small>KL ${kl[dim].toFixed(2)}</small>` : "");
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id: `z${dim}`, min: -SLIDER_RANGE, max: SLIDER_RANGE, step: 0.01, value: 0 });
    input.dataset.dim = dim;
    const output = document.createElement("output");
    output.htmlFor = input.id;
    output.value = "0.00";
    input.addEventListener("input", () => {
      state.z[dim] = Number(input.value);
      output.value = state.z[dim].toFixed(2);
      decode();
    });
    row.append(label, input, output);
    container.append(row);
  }
}

// Move every slider to z (values beyond the slider range pin the knob at its end).
function setZ(z) {
  state.z = z.map(Number);
  for (const input of document.querySelectorAll("#sliders input")) {
    const value = state.z[Number(input.dataset.dim)];
    input.value = Math.max(-SLIDER_RANGE, Math.min(SLIDER_RANGE, value));
    input.nextElementSibling.value = value.toFixed(2);
  }
  decode();
}

// Map coordinates (standard deviations along the two principal axes) <-> canvas pixels.
function mapFrame() {
  const points = state.info.map.points;
  let extent = 1;
  for (const [u, v] of points) extent = Math.max(extent, Math.abs(u), Math.abs(v));
  extent *= 1.08;
  const canvas = $("map");
  const half = canvas.width / 2;
  return {
    toPixel: ([u, v]) => [half + (u / extent) * half, half - (v / extent) * half],
    toMap: (x, y) => [((x - half) / half) * extent, ((half - y) / half) * extent],
  };
}

function drawMap() {
  const canvas = $("map");
  const context = canvas.getContext("2d");
  const { points, labels } = state.info.map;
  const frame = mapFrame();
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.globalAlpha = 0.55;
  points.forEach((point, i) => {
    const [x, y] = frame.toPixel(point);
    context.fillStyle = labels ? PALETTE[labels[i] % PALETTE.length] : PALETTE[0];
    context.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  context.globalAlpha = 1;
  if (state.marker) {
    const [x, y] = state.marker;
    context.strokeStyle = "#000";
    context.lineWidth = 2;
    context.beginPath();
    context.arc(x, y, 7, 0, 2 * Math.PI);
    context.stroke();
  }
}

function drawLegend() {
  const legend = $("legend");
  legend.textContent = "";
  const labels = state.info.map.labels;
  if (!labels) return;
  for (const label of [...new Set(labels)].sort((a, b) => a - b)) {
    const item = document.createElement("span");
    item.style.setProperty("--swatch", PALETTE[label % PALETTE.length]);
    const names = state.info.class_names;
    item.textContent = names && names[label] !== undefined ? names[label] : `label ${label}`;
    legend.append(item);
  }
}

function onMapClick(event) {
  const canvas = $("map");
  const box = canvas.getBoundingClientRect();
  const x = ((event.clientX - box.left) / box.width) * canvas.width;
  const y = ((event.clientY - box.top) / box.height) * canvas.height;
  const [u, v] = mapFrame().toMap(x, y);
  const { mean, axes, scales } = state.info.map;
  // z = mean + u * scale_1 * axis_1 + v * scale_2 * axis_2
  setZ(mean.map((m, j) => m + u * scales[0] * axes[0][j] + v * scales[1] * axes[1][j]));
  state.marker = [x, y];
  drawMap();
}

async function interpolate(event) {
  event.preventDefault();
  const a = $("index-a").value, b = $("index-b").value, steps = $("steps").value;
  const spherical = $("spherical").checked ? 1 : 0;
  try {
    const [path, first, second] = await Promise.all([
      api(`/api/interpolate?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}&steps=${encodeURIComponent(steps)}&spherical=${spherical}${labelQuery()}`),
      api(`/api/encode?index=${encodeURIComponent(a)}`),
      api(`/api/encode?index=${encodeURIComponent(b)}`),
    ]);
    $("interpolation").src = path.image;
    $("original-a").src = first.image;
    $("original-b").src = second.image;
    showError(null);
  } catch (error) {
    showError(error);
  }
}

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    showError(error);
    return;
  }
  const info = state.info;
  $("run-info").textContent = `${info.run} · ${info.latent_dim} latent dimensions · images ${info.image_shape.join("×")} · ${info.test_images} test images · figures: ${info.figure}`;
  const last = info.test_images - 1;
  for (const id of ["index-a", "index-b"]) $(id).max = last;
  if (info.classes) {
    info.classes.forEach((name, k) => $("label").append(new Option(name, k)));
    $("label-picker").hidden = false;
    $("label").addEventListener("change", () => { decode(); $("interpolation-form").requestSubmit(); });
  }
  buildSliders();
  drawMap();
  drawLegend();
  $("map").addEventListener("click", onMapClick);
  $("sample-button").addEventListener("click", async () => {
    try {
      const body = await api(`/api/sample?n=1${labelQuery()}`);
      setZ(body.z[0]);
    } catch (error) {
      showError(error);
    }
  });
  $("zero-button").addEventListener("click", () => setZ(new Array(info.latent_dim).fill(0)));
  $("interpolation-form").addEventListener("submit", interpolate);
  setZ(new Array(info.latent_dim).fill(0));
  $("interpolation-form").requestSubmit();
}

start();
