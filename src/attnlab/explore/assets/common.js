"use strict";
// Shared by both explorer pages: the data, its decoding, a colour map and small DOM helpers.
const DATA = JSON.parse(document.getElementById("attnlab-data").textContent);

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Rows of attention as packed in Python (attnlab.explore.pack): uint8 per weight, one float32 scale per row.
function Rows(packed, rowLen) {
  const q = b64bytes(packed.q);
  const scale = new Float32Array(b64bytes(packed.scale).buffer);  // little-endian, as every browser is
  return function row(i) {
    const out = new Float32Array(rowLen);
    for (let k = 0; k < rowLen; k++) out[k] = q[i * rowLen + k] * scale[i];
    return out;
  };
}

// The mean of several rows, e.g. over heads or layers.
function meanRows(rows) {
  const out = new Float32Array(rows[0].length);
  for (const r of rows) for (let k = 0; k < r.length; k++) out[k] += r[k] / rows.length;
  return out;
}

function range(n) { return Array.from({length: n}, (_, i) => i); }

// Viridis at 9 anchors, linearly interpolated: close enough to matplotlib's, which the static figures use.
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i;
  const c = VIRIDIS[i].map((v, j) => Math.round(v + f * (VIRIDIS[i + 1][j] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function drawColorbar(canvas, vmax, label) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  for (let x = 0; x < w; x++) { ctx.fillStyle = viridis(x / (w - 1)); ctx.fillRect(x, 0, 1, h - 14); }
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
  ctx.textAlign = "left"; ctx.fillText("0", 0, h - 2);
  ctx.textAlign = "right"; ctx.fillText(vmax.toPrecision(3), w, h - 2);
  ctx.textAlign = "center"; ctx.fillText(label, w / 2, h - 2);
}

// Options of a <select>: [value, text] pairs. Text goes in as text, never as markup.
function fillSelect(sel, options) {
  sel.replaceChildren(...options.map(([value, text]) => {
    const o = document.createElement("option");
    o.value = String(value); o.textContent = text;
    return o;
  }));
}

function $(id) { return document.getElementById(id); }
