"""The studio's own paint canvas, with the Live preview beside it: a `gr.HTML` component, no build step.

Why not gr.ImageEditor: gradio 6.31's editor sends its value about 1.1 s after mouse-up (its front end waits
out a 1 s debounce), too late for a preview that follows the brush. This canvas keeps the editor's tools
(the model's palette and any colour, brush sizes, eraser, undo, clear, upload / paste / drop, and for a photo
a paint layer and a mask-only layer) and, on pointer-up, sends its picture straight to the Python function
`sdedit.studio.live.preview` (a gr.HTML server function), then shows the answer beside the canvas.

Its value (what Generate and the sweep read) is a JSON string, kept current after every change:
`{"background": <PNG data URL>, "layers": [<paint layer>, <mask layer> or null], "width": W, "height": H}`.
`read_canvas` turns it into the editor-style dict that `guides.paint_guide` / `guides.photo_guide` take, and
`canvas_value` builds one from Python (an example, a result sent back as the new guide). Data URLs only:
a value never names a file on the server.

Props (updated from Python with `gr.update(...)`): `mode` ("paint" or "photo"), `palette` (hex colours),
`live` (the page's settings that the preview follows: model, strength, seed, mask dilation and feather).
Whether Live may be on is asked from the server per model (`live.policy`), which measures a preview's cost.
"""

from __future__ import annotations

import base64
import io
import json

import gradio as gr
import numpy as np
from PIL import Image

from ..configs import ModelConfig
from ..errors import InputError
from . import limits, live

MAX_PHOTO_SIDE = 768  # a photo is scaled to at most this on the canvas (the request body stays under 4 MB)
MAX_VALUE_CHARS = int(limits.MAX_REQUEST_MB * 1e6)


def _data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def canvas_value(background: Image.Image | None, layers: list[Image.Image | None] | None = None) -> str:
    """A value for the canvas: a background (RGB) and optional RGBA layers (paint, mask)."""
    out = {"background": None, "layers": [], "width": None, "height": None}
    if background is not None:
        out["background"] = _data_url(background.convert("RGB"))
        out["width"], out["height"] = background.size
    for layer in layers or []:
        out["layers"].append(None if layer is None else _data_url(layer.convert("RGBA")))
    return json.dumps(out)


def _rgba(url, what: str) -> np.ndarray | None:
    data = live.decode_data_url(url, what, MAX_VALUE_CHARS)
    if data is None:
        return None
    from ..imaging import load_image

    return np.asarray(load_image(data, what, limits.APP_LIMITS.image).convert("RGBA"))


def read_canvas(value, layers: int = 2) -> dict:
    """The canvas's value -> {"background": RGBA array or None, "layers": [RGBA arrays]} (guides' editor dict).

    Missing layers come back fully transparent (not None), so that layer i is always layer i.
    """
    if isinstance(value, dict):  # already read (tests, or a caller that holds the dict)
        data = value
    elif not value:
        data = {}
    else:
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            raise InputError("the canvas could not be read (too large or not text)")
        try:
            data = json.loads(value)
        except ValueError:
            raise InputError("the canvas could not be read") from None
        if not isinstance(data, dict):
            raise InputError("the canvas could not be read")
    bg = _rgba(data.get("background"), "canvas")
    raw = data.get("layers") or []
    if not isinstance(raw, list):
        raise InputError("the canvas could not be read (layers)")
    out = []
    for i in range(min(len(raw), layers)):
        layer = _rgba(raw[i], "canvas layer")
        if layer is None and bg is not None:
            layer = np.zeros((*bg.shape[:2], 4), np.uint8)
        if layer is not None:
            out.append(layer)
    return {"background": bg, "layers": out}


# ----- the component ----------------------------------------------------------------------------------------

HTML = """
<div class="sdl" data-mode="{{mode}}">
  <div class="sdl-toolbar" role="toolbar" aria-label="Canvas tools">
    <button type="button" class="sdl-tool sdl-on" data-tool="brush" aria-label="Brush" title="Brush">✎</button>
    <button type="button" class="sdl-tool" data-tool="eraser" aria-label="Eraser" title="Eraser">⌫</button>
    <button type="button" class="sdl-colorbtn" aria-label="Color" title="Colour">
      <span class="sdl-current"></span></button>
    <label class="sdl-size" title="Brush size"><input type="range" min="2" max="60" value="10"
      aria-label="Brush size"><span class="sdl-size-text">10</span></label>
    <button type="button" class="sdl-undo" aria-label="Undo" title="Undo (Ctrl+Z)">↶</button>
    <button type="button" class="sdl-clear" aria-label="Clear" title="Clear">✕</button>
    <button type="button" class="sdl-upload" aria-label="Upload" title="Upload, paste or drop an image">⤒</button>
    <input type="file" accept="image/*" class="sdl-file" hidden>
    <span class="sdl-layers" role="group" aria-label="Layer">
      <button type="button" class="sdl-layer sdl-on" data-layer="0" aria-label="Paint strokes layer">Paint</button>
      <button type="button" class="sdl-layer" data-layer="1" aria-label="Mask only layer">Mask only</button>
      <button type="button" class="sdl-layer" data-layer="2" aria-label="Strength layer"
        title="Strength brush: how much each region may change (0 = kept exactly, 1 = the full t0)">Strength</button>
    </span>
    <span class="sdl-levels" role="group" aria-label="Strength level">
      <button type="button" class="sdl-level" data-level="0" aria-label="Strength 0">0</button>
      <button type="button" class="sdl-level" data-level="0.25" aria-label="Strength 0.25">¼</button>
      <button type="button" class="sdl-level sdl-on" data-level="0.5" aria-label="Strength 0.5">½</button>
      <button type="button" class="sdl-level" data-level="0.75" aria-label="Strength 0.75">¾</button>
      <button type="button" class="sdl-level" data-level="1" aria-label="Strength 1">1</button>
    </span>
    <span class="sdl-zoom" title="Zoom">100%</span>
  </div>
  <div class="sdl-palette" hidden></div>
  <div class="sdl-main">
    <div class="sdl-stage"><canvas class="sdl-view" width="256" height="256" aria-label="{{label_text}}"></canvas></div>
    <div class="sdl-preview" aria-live="polite">
      <div class="sdl-preview-head">
        <label class="sdl-live"><input type="checkbox"> <b>Live</b> preview</label>
        <span class="sdl-busy" hidden>●</span>
      </div>
      <div class="sdl-frame"><img class="sdl-img" alt="Live preview" hidden><p class="sdl-note"></p></div>
      <p class="sdl-why"></p>
    </div>
  </div>
</div>
"""

CSS = """
.sdl { display: flex; flex-direction: column; gap: 6px; font-size: var(--text-md); }
.sdl-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; }
.sdl-toolbar button { min-width: 34px; height: 34px; padding: 0 8px; border-radius: var(--radius-md);
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
  color: var(--body-text-color); cursor: pointer; font-size: 1.05em; line-height: 1; }
.sdl-toolbar button:hover { background: var(--button-secondary-background-fill-hover); }
.sdl-toolbar button.sdl-on { border-color: var(--color-accent); box-shadow: 0 0 0 1px var(--color-accent) inset; }
.sdl-current { display: inline-block; width: 18px; height: 18px; border-radius: 50%;
  border: 1px solid var(--border-color-primary); vertical-align: middle; }
.sdl-size { display: inline-flex; align-items: center; gap: 4px; }
.sdl-size input { width: 86px; }
.sdl-size-text { min-width: 2ch; font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
.sdl[data-mode="paint"] .sdl-layers { display: none; }
.sdl-layers { display: inline-flex; gap: 2px; }
.sdl-levels { display: none; gap: 2px; }
.sdl[data-layer="2"] .sdl-levels { display: inline-flex; }
.sdl-zoom { margin-left: auto; color: var(--body-text-color-subdued); font-size: 0.85em; }
.sdl-palette { display: flex; flex-wrap: wrap; gap: 4px; padding: 6px; border-radius: var(--radius-md);
  border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
.sdl-palette[hidden] { display: none; }
.sdl-palette button.color { width: 26px; height: 26px; border-radius: 50%; cursor: pointer;
  border: 1px solid var(--border-color-primary); padding: 0; }
.sdl-palette button.color.sdl-on { outline: 2px solid var(--color-accent); outline-offset: 1px; }
.sdl-palette input[type=color] { width: 30px; height: 28px; padding: 0; border: none; background: none; }
.sdl-main { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.sdl-stage { flex: 1 1 300px; min-width: 280px; display: flex; justify-content: center; }
.sdl-view { touch-action: none; cursor: crosshair; outline: 1px solid var(--border-color-primary);
  background: #fff; }
.sdl-preview { flex: 1 1 220px; min-width: 220px; max-width: 380px; display: flex; flex-direction: column;
  gap: 4px; }
.sdl-preview-head { display: flex; align-items: center; gap: 8px; }
.sdl-live { display: inline-flex; align-items: center; gap: 4px; cursor: pointer; }
.sdl-busy { color: var(--color-accent); font-size: 0.8em; }
.sdl-frame { position: relative; aspect-ratio: 1 / 1; border-radius: var(--radius-sm);
  border: 1px dashed var(--border-color-primary); background: var(--background-fill-secondary);
  display: flex; align-items: center; justify-content: center; overflow: hidden; }
.sdl-img { width: 100%; height: 100%; object-fit: contain; }
.sdl-note { margin: 0; padding: 8px; text-align: center; color: var(--body-text-color-subdued); font-size: 0.9em; }
.sdl-why { margin: 0; color: var(--body-text-color-subdued); font-size: 0.85em; }
.sdl-off .sdl-frame { opacity: 0.6; }
"""

# The page's code. Variables from gr.HTML: element, trigger, props, server, upload, watch. The names of the
# props are never written in quotes here: gr.HTML would take a quoted name for a custom event's name.
JS = r"""
const root = element.querySelector('.sdl');
const mode = root.dataset.mode === 'photo' ? 'photo' : 'paint';
const view = root.querySelector('.sdl-view');
const vctx = view.getContext('2d');
const $ = (s) => root.querySelector(s);
const img = $('.sdl-img'), note = $('.sdl-note'), why = $('.sdl-why'), busy = $('.sdl-busy');
const liveBox = $('.sdl-live input'), previewBox = $('.sdl-preview'), zoomText = $('.sdl-zoom');
const palette = $('.sdl-palette'), current = $('.sdl-current'), sizeInput = $('.sdl-size input');
const MAX_SIDE = mode === 'photo' ? 768 : 256, UNDO_MAX = 30;
const visitor = window.__sdeditVisitor || (window.__sdeditVisitor =
  (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + String(Date.now())));
let W = 256, H = 256, tool = 'brush', active = 0, color = '#212121', drawing = null;
let seq = 0, shown = 0, policyFor = undefined, allowed = false, userOff = false, synced = null, bgURL = null;
const bg = document.createElement('canvas');
// paint, mask only, and (photo) the strength layer: grey levels, white = the full t0, black = kept exactly
const layers = [document.createElement('canvas'), document.createElement('canvas'), document.createElement('canvas')];
let level = 0.5;
const undo = [];

function size(w, h) {
  W = w; H = h;
  for (const c of [bg, ...layers, view]) { c.width = w; c.height = h; }
  fit();
}
function ctxOf(c) { return c.getContext('2d', { willReadFrequently: true }); }
function whiteBg() { const c = ctxOf(bg); c.fillStyle = '#fff'; c.fillRect(0, 0, W, H); bgURL = null; }

// ----- showing ---------------------------------------------------------------------------------------
let queued = false;
function render() {
  if (queued) return;
  queued = true;
  requestAnimationFrame(() => {
    queued = false;
    vctx.clearRect(0, 0, W, H);
    vctx.drawImage(bg, 0, 0);
    vctx.drawImage(layers[0], 0, 0);
    if (mode === 'photo') {  // the mask layer, as a translucent tint
      vctx.save(); vctx.globalAlpha = 0.45; vctx.drawImage(tinted(), 0, 0);
      vctx.globalAlpha = 0.6; vctx.drawImage(layers[2], 0, 0); vctx.restore();
    }
  });
}
const tint = document.createElement('canvas');
function tinted() {
  tint.width = W; tint.height = H;
  const c = tint.getContext('2d');
  c.drawImage(layers[1], 0, 0);
  c.globalCompositeOperation = 'source-in'; c.fillStyle = '#7c3aed'; c.fillRect(0, 0, W, H);
  return tint;
}
function fit() {
  const stage = $('.sdl-stage');
  const avail = Math.max(120, stage.clientWidth || 300);
  const maxH = Math.max(200, Math.min(360, window.innerHeight * 0.6));
  const pct = Math.max(10, Math.floor(Math.min(avail / W, maxH / H) * 100));
  view.style.width = (W * pct / 100) + 'px';
  view.style.height = (H * pct / 100) + 'px';
  zoomText.textContent = pct + '%';
}
new ResizeObserver(() => fit()).observe($('.sdl-stage'));

// ----- tools -----------------------------------------------------------------------------------------
function setTool(t) {
  tool = t;
  root.querySelectorAll('.sdl-tool').forEach((b) => b.classList.toggle('sdl-on', b.dataset.tool === t));
  palette.hidden = true;
}
function setColor(c) {
  color = c; current.style.background = c;
  palette.querySelectorAll('button.color').forEach((b) => b.classList.toggle('sdl-on', b.dataset.color === c));
}
function buildPalette(colors) {
  palette.textContent = '';
  for (const c of (colors && colors.length ? colors : ['#212121', '#F92F60', '#FFC83D', '#00A6ED', '#00D26A'])) {
    const b = document.createElement('button');
    b.type = 'button'; b.className = 'color'; b.dataset.color = c; b.style.background = c;
    b.setAttribute('aria-label', 'colour ' + c);
    b.addEventListener('click', () => { setColor(c); });
    palette.appendChild(b);
  }
  const any = document.createElement('input');
  any.type = 'color'; any.title = 'Any colour'; any.setAttribute('aria-label', 'Any colour');
  any.addEventListener('input', () => setColor(any.value));
  palette.appendChild(any);
  setColor(colors && colors.length ? colors[0] : '#212121');
}
root.querySelectorAll('.sdl-tool').forEach((b) => b.addEventListener('click', () => setTool(b.dataset.tool)));
$('.sdl-colorbtn').addEventListener('click', () => { palette.hidden = !palette.hidden; });
sizeInput.addEventListener('input', () => { $('.sdl-size-text').textContent = sizeInput.value; });
root.querySelectorAll('.sdl-layer').forEach((b) => b.addEventListener('click', () => {
  active = Number(b.dataset.layer);
  root.dataset.layer = String(active);
  root.querySelectorAll('.sdl-layer').forEach((x) => x.classList.toggle('sdl-on', x === b));
}));
root.querySelectorAll('.sdl-level').forEach((b) => b.addEventListener('click', () => {
  level = Number(b.dataset.level);
  root.querySelectorAll('.sdl-level').forEach((x) => x.classList.toggle('sdl-on', x === b));
}));

// ----- undo ------------------------------------------------------------------------------------------
function snapshot(withBg) {
  const s = { W, H, layers: layers.map((l) => ctxOf(l).getImageData(0, 0, W, H)) };
  if (withBg) s.bg = ctxOf(bg).getImageData(0, 0, W, H);
  undo.push(s);
  if (undo.length > UNDO_MAX) undo.shift();
}
function snapshotLayer(i) {
  undo.push({ W, H, layer: i, data: ctxOf(layers[i]).getImageData(0, 0, W, H) });
  if (undo.length > UNDO_MAX) undo.shift();
}
function restore() {
  const s = undo.pop();
  if (!s) return false;
  if (s.W !== W || s.H !== H) size(s.W, s.H);
  if (s.bg) { ctxOf(bg).putImageData(s.bg, 0, 0); bgURL = null; }
  if (s.layers) s.layers.forEach((d, i) => ctxOf(layers[i]).putImageData(d, 0, 0));
  if (s.data) ctxOf(layers[s.layer]).putImageData(s.data, 0, 0);
  return true;
}
$('.sdl-undo').addEventListener('click', () => { if (restore()) changed(); });
$('.sdl-clear').addEventListener('click', () => {
  snapshot(mode === 'paint');
  layers.forEach((l) => ctxOf(l).clearRect(0, 0, W, H));
  if (mode === 'paint') whiteBg();
  changed();
});
// Ctrl+Z (Cmd+Z) undoes on the canvas last painted on, wherever the keyboard focus is (a canvas takes no
// focus, so a key listener on it alone never heard the keys), except while typing in a field.
document.addEventListener('keydown', (e) => {
  if (!(e.ctrlKey || e.metaKey) || e.shiftKey || e.altKey || e.key.toLowerCase() !== 'z') return;
  if (window.__sdeditLastCanvas !== root || !root.isConnected || !root.offsetParent) return;
  const t = e.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  e.preventDefault();
  if (restore()) changed();
});
root.addEventListener('pointerdown', () => { window.__sdeditLastCanvas = root; }, true);

// ----- strokes ---------------------------------------------------------------------------------------
function point(e) {
  const r = view.getBoundingClientRect();
  return [(e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height];
}
function strokeCtx() {
  const c = ctxOf(layers[mode === 'photo' ? active : 0]);
  c.lineCap = 'round'; c.lineJoin = 'round';
  c.lineWidth = Number(sizeInput.value) * Math.max(W, H) / 256;
  c.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
  const grey = Math.round(level * 255);
  c.strokeStyle = c.fillStyle = (mode === 'photo' && active === 1) ? '#ffffff'
    : (mode === 'photo' && active === 2) ? `rgb(${grey},${grey},${grey})` : color;
  return c;
}
view.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  view.setPointerCapture(e.pointerId);
  palette.hidden = true;
  snapshotLayer(mode === 'photo' ? active : 0);
  const c = strokeCtx();
  const [x, y] = point(e);
  c.beginPath(); c.arc(x, y, c.lineWidth / 2, 0, Math.PI * 2); c.fill();
  drawing = { c, x, y };
  render();
});
view.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  const c = drawing.c;
  c.beginPath(); c.moveTo(drawing.x, drawing.y);
  for (const ev of (events.length ? events : [e])) {
    const [x, y] = point(ev);
    c.lineTo(x, y); drawing.x = x; drawing.y = y;
  }
  c.stroke();
  render();
});
function endStroke() {
  if (!drawing) return;
  drawing.c.globalCompositeOperation = 'source-over';
  drawing = null;
  render();
  changed();
}
view.addEventListener('pointerup', endStroke);
view.addEventListener('pointercancel', endStroke);

// ----- images in -------------------------------------------------------------------------------------
function loadImage(src) {
  return new Promise((ok, fail) => { const i = new Image(); i.onload = () => ok(i); i.onerror = fail; i.src = src; });
}
async function useImage(image) {  // an upload, paste or drop
  window.__sdeditLastCanvas = root;  // Ctrl+Z undoes it
  snapshot(true);
  if (mode === 'paint') {  // fitted onto the square canvas, on white, centred
    size(256, 256); whiteBg();
    const s = 256 / Math.max(image.width, image.height);
    const w = Math.round(image.width * s), h = Math.round(image.height * s);
    ctxOf(bg).drawImage(image, (256 - w) / 2, (256 - h) / 2, w, h);
  } else {
    const s = Math.min(1, MAX_SIDE / Math.max(image.width, image.height));
    size(Math.max(8, Math.round(image.width * s)), Math.max(8, Math.round(image.height * s)));
    whiteBg();
    ctxOf(bg).drawImage(image, 0, 0, W, H);
  }
  layers.forEach((l) => ctxOf(l).clearRect(0, 0, W, H));
  bgURL = null;
  render();
  changed();
}
async function useFile(file) {
  if (!file || !file.type.startsWith('image/')) return;
  const url = URL.createObjectURL(file);
  try { await useImage(await loadImage(url)); } catch (e) { say('That file is not an image the browser can read.'); }
  finally { URL.revokeObjectURL(url); }
}
const fileInput = $('.sdl-file');
$('.sdl-upload').addEventListener('click', () => fileInput.click());
fileInput.addEventListener('change', () => { useFile(fileInput.files[0]); fileInput.value = ''; });
root.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.type.startsWith('image/'));
  if (item) { e.preventDefault(); useFile(item.getAsFile()); }
});
root.addEventListener('dragover', (e) => e.preventDefault());
root.addEventListener('drop', (e) => {
  e.preventDefault();
  if (e.dataTransfer && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
});

let loads = 0;
async function loadValue(text) {  // a value set from Python (start, an example, "Use as new guide", a restore)
  if (loads++) snapshot(true);  // Ctrl+Z takes a loaded picture off again (not the first one: nothing before)
  let v = {};
  try { v = JSON.parse(text || '{}') || {}; } catch (e) { v = {}; }
  const bgImage = v.background ? await loadImage(v.background) : null;
  const layerImages = await Promise.all((v.layers || []).slice(0, 3).map((u) => (u ? loadImage(u) : null)));
  size(bgImage ? bgImage.width : 256, bgImage ? bgImage.height : 256);
  whiteBg();
  if (bgImage) ctxOf(bg).drawImage(bgImage, 0, 0);
  layers.forEach((l, i) => {
    const c = ctxOf(l);
    c.clearRect(0, 0, W, H);
    if (layerImages[i]) c.drawImage(layerImages[i], 0, 0, W, H);
  });
  bgURL = v.background || null;
  synced = text;
  render();
  requestPreview();
}

// ----- the value (what Generate reads) and the preview -----------------------------------------------
function changed() {
  render();
  requestPreview();
  setTimeout(sync, 0);  // after the preview's request has left
}
function layerURL(l) {
  const d = ctxOf(l).getImageData(0, 0, W, H).data;
  for (let i = 3; i < d.length; i += 4) if (d[i]) return l.toDataURL('image/png');
  return null;
}
function sync() {
  if (!bgURL) bgURL = bg.toDataURL('image/png');
  const v = JSON.stringify({ background: bgURL, layers: mode === 'photo' ? layers.map(layerURL) : [layerURL(layers[0])],
    width: W, height: H });
  if (v === synced) return;
  synced = v;
  props.value = v;
}
function small(side) {  // the canvas flattened, at most `side` px a side, as the preview's guide
  const s = Math.min(1, side / Math.max(W, H));
  const c = document.createElement('canvas');
  c.width = Math.max(8, Math.round(W * s)); c.height = Math.max(8, Math.round(H * s));
  const x = c.getContext('2d');
  x.drawImage(bg, 0, 0, c.width, c.height);
  x.drawImage(layers[0], 0, 0, c.width, c.height);
  return c;
}
function maskSmall(w, h) {  // every painted pixel of either layer, white on black
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const x = c.getContext('2d');
  x.drawImage(layers[0], 0, 0, w, h); x.drawImage(layers[1], 0, 0, w, h);
  x.globalCompositeOperation = 'source-in'; x.fillStyle = '#fff'; x.fillRect(0, 0, w, h);
  x.globalCompositeOperation = 'destination-over'; x.fillStyle = '#000'; x.fillRect(0, 0, w, h);
  return c;
}
function strengthSmall(w, h, mask) {  // the Strength layer as Generate reads it (tabs/edit.photo_guide_and_strength)
  // an opaque grey map, each painted pixel its level (white = the full t0, black = kept), white where unpainted;
  // levels above 0 also mark `mask` (they may change). null when nothing is painted: no map, as Generate.
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const x = ctxOf(c);
  x.drawImage(layers[2], 0, 0, w, h);
  const im = x.getImageData(0, 0, w, h), d = im.data;
  const mx = ctxOf(mask), mim = mx.getImageData(0, 0, w, h), m = mim.data;
  let painted = false;
  for (let i = 0; i < d.length; i += 4) {
    const v = d[i + 3] ? d[i] : 255;
    if (d[i + 3]) { painted = true; if (v) m[i] = m[i + 1] = m[i + 2] = 255; }
    d[i] = d[i + 1] = d[i + 2] = v; d[i + 3] = 255;
  }
  if (!painted) return null;
  x.putImageData(im, 0, 0); mx.putImageData(mim, 0, 0);
  return c;
}
function say(text) { img.hidden = true; note.hidden = false; note.textContent = text; }
function liveOn() { return allowed && liveBox.checked; }
async function requestPreview() {
  await checkPolicy();
  if (!liveOn()) return;
  const mine = ++seq;
  const guide = small(256);
  const settings = props.live || {};
  const mask = mode === 'photo' ? maskSmall(guide.width, guide.height) : null;
  const strength = mode === 'photo' ? strengthSmall(guide.width, guide.height, mask) : null;
  const payload = { visitor, seq: mine, guide: guide.toDataURL('image/png'), settings,
    mask: mask ? mask.toDataURL('image/png') : null, strength_map: strength ? strength.toDataURL('image/png') : null };
  busy.hidden = false;
  let res = null;
  try { res = await server.preview(payload); } catch (e) {
    res = { seq: mine, error: 'the preview could not be reached' };
  }
  if (mine === seq) busy.hidden = true;
  if (!res || res.stale || res.seq < shown || !liveOn()) return;
  shown = res.seq;
  previewBox.dataset.last = JSON.stringify({ seq: res.seq, compute_ms: res.compute_ms, wait_ms: res.wait_ms });
  if (res.error) { say(res.error.charAt(0).toUpperCase() + res.error.slice(1) + '.'); return; }
  img.src = res.image; img.hidden = false; note.hidden = true;
}

// ----- Live: may it be on for this model (the server measured it), and did the user turn it off? ----------
async function checkPolicy() {
  const model = (props.live || {}).model || null;
  if (model === policyFor) return;
  policyFor = model;
  let p = null;
  try { p = await server.policy({ model }); } catch (e) {
    p = { allowed: false, reason: 'Live is off: the server did not answer.' };
  }
  if (policyFor !== model) return;
  allowed = !!(p && p.allowed);
  liveBox.disabled = !allowed;
  liveBox.checked = allowed && !userOff;
  why.textContent = allowed ? '' : (p && p.reason) || 'Live is off for this model.';
  showState();
}
function showState() {
  previewBox.classList.toggle('sdl-off', !liveOn());
  if (!liveOn()) {
    say(allowed ? 'Live is off: turn it on to see the picture follow your brush.'
      : 'Press Generate to see the result.');
  }
  else if (img.hidden && !note.textContent.startsWith('Paint')) say('Paint: the preview follows every stroke.');
}
liveBox.addEventListener('change', () => {
  userOff = !liveBox.checked;
  showState();
  if (liveOn()) { shown = 0; requestPreview(); }
});

// ----- start, and values / props from Python ------------------------------------------------------------
buildPalette(props.palette);
watch(Object.keys(props), () => {
  if (props.value && props.value !== synced) loadValue(props.value);
  buildPaletteIfChanged();
  checkPolicy().then(() => { if (liveOn()) requestPreview(); });
});
let paletteKey = JSON.stringify(props.palette || []);
function buildPaletteIfChanged() {
  const k = JSON.stringify(props.palette || []);
  if (k !== paletteKey) { paletteKey = k; buildPalette(props.palette); }
}
size(256, 256); whiteBg(); render();
say('Paint: the preview follows every stroke.');
loadValue(props.value);
"""


def live_canvas(value: str, *, mode: str, cfg: ModelConfig, label: str, elem_id: str) -> gr.HTML:
    """A paint canvas (mode "paint") or a photo with a paint layer and a mask layer (mode "photo"), with the
    Live preview beside it. A plain gr.HTML (Gradio rebuilds a component from its constructor's arguments
    when a prop is updated), so everything it needs is in its arguments."""
    return gr.HTML(
        value=value,
        html_template=HTML,
        css_template=CSS,
        js_on_load=JS,
        server_functions=[live.preview, live.policy],
        elem_id=elem_id,
        elem_classes=["live-canvas"],
        mode=mode,
        label_text=label,
        palette=list(cfg.palette),
        live=live_settings(cfg.name, cfg.defaults.strength, -1, 0, 2),
    )


def canvas_update(canvas: gr.HTML, **changes) -> dict:
    """An update of a canvas's props (`value`, `live`, `palette`) that also carries the props it was built with.

    Why: a canvas on a tab not yet opened is mounted later from its props as the last update left them, and
    gradio 6.31 keeps only the props that update named: a t0 change before the Edit tab was first opened
    mounted that canvas without its mode (a paint canvas, no layers) and without its label.
    """
    fixed = {k: canvas.props[k] for k in ("mode", "label_text") if k in canvas.props}
    return gr.update(**fixed, **changes)


def live_settings(model, strength, seed, mask_dilation, mask_feather) -> dict:
    """The page's settings the preview follows (the canvas's `live` prop)."""

    def number(v, default):
        try:
            return float(v)
        except (TypeError, ValueError):
            return default

    return {
        "model": model,
        "strength": number(strength, 0.5),
        "seed": number(seed, -1),
        "mask_dilation": number(mask_dilation, 0),
        "mask_feather": number(mask_feather, 0),
    }


def follow_settings(canvas: gr.HTML, page) -> None:
    """Keep the canvas's `live` settings and palette in step with the page's controls (no queue: instant)."""
    from .models import config_for

    c, r = page.controls, page.results

    def update(model, strength, seed, dilation, feather):
        try:
            palette = list(config_for(model).palette)
        except Exception:
            palette = []
        return canvas_update(canvas, live=live_settings(model, strength, seed, dilation, feather), palette=palette)

    gr.on(
        [c.loaded_model.change, r.strength.change, r.seed.change, c.mask_dilation.change, c.mask_feather.change],
        update,
        [c.loaded_model, r.strength, r.seed, c.mask_dilation, c.mask_feather],
        canvas,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
