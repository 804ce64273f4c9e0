// The studio's canvas (sdedit/studio/canvas.py, LiveCanvas): gr.HTML's js_on_load, run once per mount with
// element, trigger, props, server, upload and watch. The names of the props are never written in quotes here:
// gr.HTML would take a quoted name for a custom event's name.
//
// Layers: the background (a white sheet or a photo), paint, mask only and strength (photo), and the automatic
// fill of closed outlines, which sits on top and is its own layer in the value, so that Generate reads exactly
// what the canvas shows. While "Fill outlines" is on, the fill layer is the outline fill of the drawing
// (`Outlines.fill`, sdedit/outlines.py's rule pixel for pixel); undoing a fill turns the switch off.

const root = element.querySelector('.sdl');
const mode = root.dataset.mode === 'photo' ? 'photo' : 'paint';
const view = root.querySelector('.sdl-view');
const vctx = view.getContext('2d');
const $ = (s) => root.querySelector(s);
const img = $('.sdl-img'), note = $('.sdl-note'), why = $('.sdl-why'), busy = $('.sdl-busy');
const liveBox = $('.sdl-live input'), previewBox = $('.sdl-preview'), zoomText = $('.sdl-zoom');
const palette = $('.sdl-palette'), current = $('.sdl-current'), sizeInput = $('.sdl-size input');
const fillBox = $('.sdl-autofill input'), hintText = $('.sdl-hint');
const UNDO_MAX = 30;
const visitor = window.__sdeditVisitor || (window.__sdeditVisitor =
  (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + String(Date.now())));

// Props as the last update that named each left them (an update that leaves one out keeps it). The props that
// follow the page's model and controls are the same for every canvas of the page: they are kept page-wide too,
// so that a canvas mounted after an update that did not name them (a restore onto a tab not yet opened) has them.
const known = {};
const pageWide = window.__sdeditPageProps || (window.__sdeditPageProps = {});
const PAGE_WIDE = ['live', 'canvas_size'];
function remember() {
  for (const k of Object.keys(props)) if (props[k] !== undefined && props[k] !== null) known[k] = props[k];
  for (const k of PAGE_WIDE) {
    if (props[k] !== undefined && props[k] !== null) pageWide[k] = props[k];
    else if (pageWide[k] !== undefined) known[k] = pageWide[k];
  }
  return known;
}
remember();
const BRUSH_SIDE = 256;  // brush sizes are px on a 256 px picture: a brush looks the same on any canvas size
let SIDE = Number(known.canvas_size) || BRUSH_SIDE;  // the paint canvas (a square): the model's (canvas_update)
const MAX_SIDE = mode === 'photo' ? Number(known.photo_side) : SIDE;  // a photo's largest side here

let W = SIDE, H = SIDE, tool = 'brush', active = 0, color = '#212121', drawing = null;
let seq = 0, shown = 0, policyFor = undefined, allowed = false, userOff = false, synced = null, bgURL = null;
const bg = document.createElement('canvas');
// paint, mask only, and (photo) the strength layer: grey levels, white = the full t0, black = kept exactly
const layers = [document.createElement('canvas'), document.createElement('canvas'), document.createElement('canvas')];
const fillLayer = document.createElement('canvas');  // the automatic fill of closed outlines
let fillEmpty = true;
// each layer's PNG data URL for the value, kept until the layer changes (`touch`): a sync encodes only what changed
const urls = new Map();
function touch(...cs) { for (const c of cs) urls.delete(c); }
let autoFill = false;
let level = 0.5;
const undo = [];

function size(w, h) {
  W = w; H = h;
  for (const c of [bg, ...layers, fillLayer, view]) { c.width = w; c.height = h; }
  fillEmpty = true;
  urls.clear();
  fit();
}
function ctxOf(c) { return c.getContext('2d', { willReadFrequently: true }); }
function whiteBg() { const c = ctxOf(bg); c.fillStyle = '#fff'; c.fillRect(0, 0, W, H); bgURL = null; }
function pixels(c) { return ctxOf(c).getImageData(0, 0, W, H); }

// ----- the fill rule (sdedit/outlines.py, the same pixel for pixel; the browser tests compare the two) -------
const Outlines = (() => {
  // Python's round(): halves to even
  const roundEven = (x) => { const r = Math.round(x); return (Math.abs(x % 1) === 0.5 && r % 2) ? r - 1 : r; };
  const f32 = Math.fround;
  function rule() { return known.rule; }  // outlines.py's constants (canvas.outline_rule)
  function gapFor(side) { return Math.max(1, roundEven(rule().gap_at_256 * side / 256)); }

  // RGBA `top` over RGB(A) `base` as guides.paint_over does it (float32, rounded half to even)
  function over(base, top, n) {
    const out = new Uint8Array(n * 3);
    for (let p = 0, i = 0; p < n; p++, i += 4) {
      const a = f32(top[i + 3] / 255), b = f32(1 - a);
      for (let c = 0; c < 3; c++) {
        const v = roundEven(f32(f32(top[i + c] * a) + f32(base[i + c] * b)));
        out[p * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
    return out;
  }
  // (H, W) 0/1: any channel differs from the background (white) by more than the threshold
  function painted(rgb, n) {
    const t = rule().paint_threshold, out = new Uint8Array(n);
    for (let p = 0, i = 0; p < n; p++, i += 3) out[p] = 255 - Math.min(rgb[i], rgb[i + 1], rgb[i + 2]) > t ? 1 : 0;
    return out;
  }
  function dilate(a, w, h) {  // a OR its 4 neighbours; outside the image is unpainted
    const out = new Uint8Array(a.length);
    for (let y = 0, p = 0; y < h; y++) {
      for (let x = 0; x < w; x++, p++) {
        out[p] = a[p] || (y > 0 && a[p - w]) || (y < h - 1 && a[p + w]) || (x > 0 && a[p - 1])
          || (x < w - 1 && a[p + 1]) ? 1 : 0;
      }
    }
    return out;
  }
  function erode(a, w, h) {  // a AND its 4 neighbours; outside the image counts as painted
    const out = new Uint8Array(a.length);
    for (let y = 0, p = 0; y < h; y++) {
      for (let x = 0; x < w; x++, p++) {
        out[p] = a[p] && (y === 0 || a[p - w]) && (y === h - 1 || a[p + w]) && (x === 0 || a[p - 1])
          && (x === w - 1 || a[p + 1]) ? 1 : 0;
      }
    }
    return out;
  }
  // every pixel of `free` 4-connected to a seed pixel within `free`, labelled `label` in `out`
  function flood(free, w, h, seeds, out, label, queue) {
    let head = 0, tail = 0;
    for (const s of seeds) if (free[s] && !out[s]) { out[s] = label; queue[tail++] = s; }
    while (head < tail) {
      const p = queue[head++], x = p % w;
      const next = [x > 0 ? p - 1 : -1, x < w - 1 ? p + 1 : -1, p >= w ? p - w : -1, p + w < w * h ? p + w : -1];
      for (const q of next) if (q >= 0 && free[q] && !out[q]) { out[q] = label; queue[tail++] = q; }
    }
    return tail;
  }
  // The fill of a drawing: {rgb: filled (H*W*3), filled: 0/1 per pixel, holes}. `drawn`: given, or null =
  // where `rgb` differs from white.
  function fill(rgb, w, h, drawn) {
    const n = w * h;
    drawn = drawn || painted(rgb, n);
    const none = { rgb, filled: new Uint8Array(n), holes: 0 };
    if (!drawn.some((v) => v)) return none;
    const gap = gapFor(Math.max(w, h));
    let closed = drawn;
    for (let i = 0; i < gap; i++) closed = dilate(closed, w, h);
    for (let i = 0; i < gap; i++) closed = erode(closed, w, h);
    const open = new Uint8Array(n);
    for (let p = 0; p < n; p++) open[p] = closed[p] ? 0 : 1;
    const border = [];
    for (let x = 0; x < w; x++) border.push(x, (h - 1) * w + x);
    for (let y = 0; y < h; y++) border.push(y * w, y * w + w - 1);
    const outside = new Uint8Array(n), queue = new Int32Array(n);
    flood(open, w, h, border, outside, 1, queue);
    const holes = new Uint8Array(n);
    let any = false;
    for (let p = 0; p < n; p++) if (!drawn[p] && !outside[p]) { holes[p] = 1; any = true; }
    if (!any) return none;
    // components of the holes, each labelled with its first pixel in raster order, plus 1
    const labels = new Int32Array(n), seen = new Uint8Array(n);
    const maxHole = rule().max_hole * h * w;
    for (let p = 0; p < n; p++) {
      if (!holes[p] || seen[p]) continue;
      const count = flood(holes, w, h, [p], seen, 1, queue);
      let hasOpen = false;
      for (let k = 0; k < count; k++) if (!closed[queue[k]]) { hasOpen = true; break; }
      // a hole holds a pixel the closing left unpainted (nicks are not holes) and is no frame round the picture
      const keep = hasOpen && !(count > maxHole);
      for (let k = 0; k < count; k++) labels[queue[k]] = keep ? p + 1 : 0;
    }
    // carry each hole's label gap + 2 steps into the drawn pixels (the smaller label where two meet)
    const BIG = 2147483647;
    let cur = new Int32Array(n);
    for (let p = 0; p < n; p++) cur[p] = labels[p] > 0 ? labels[p] : BIG;
    for (let step = 0; step < gap + 2; step++) {
      const nxt = cur.slice();
      let took = false;
      for (let y = 0, p = 0; y < h; y++) {
        for (let x = 0; x < w; x++, p++) {
          if (!drawn[p] || cur[p] !== BIG) continue;
          let low = BIG;
          if (y > 0 && cur[p - w] < low) low = cur[p - w];
          if (y < h - 1 && cur[p + w] < low) low = cur[p + w];
          if (x > 0 && cur[p - 1] < low) low = cur[p - 1];
          if (x < w - 1 && cur[p + 1] < low) low = cur[p + 1];
          if (low < BIG) { nxt[p] = low; took = true; }
        }
      }
      cur = nxt;
      if (!took) break;
    }
    // each hole's colour: the most frequent exact colour of the drawn pixels carrying its label, ties to the
    // smallest 0xRRGGBB
    const counts = new Map();
    for (let p = 0; p < n; p++) {
      if (!drawn[p] || cur[p] === BIG) continue;
      const c = (rgb[p * 3] << 16) | (rgb[p * 3 + 1] << 8) | rgb[p * 3 + 2];
      let m = counts.get(cur[p]);
      if (!m) { m = new Map(); counts.set(cur[p], m); }
      m.set(c, (m.get(c) || 0) + 1);
    }
    const colour = new Map();
    for (const [label, m] of counts) {
      let best = -1, bestCount = 0;
      for (const [c, k] of m) if (k > bestCount || (k === bestCount && c < best)) { best = c; bestCount = k; }
      colour.set(label, best);
    }
    const out = rgb.slice(), filled = new Uint8Array(n);
    for (let p = 0; p < n; p++) {
      if (!labels[p] || !colour.has(labels[p])) continue;
      const c = colour.get(labels[p]);
      out[p * 3] = (c >> 16) & 255; out[p * 3 + 1] = (c >> 8) & 255; out[p * 3 + 2] = c & 255;
      filled[p] = 1;
    }
    return { rgb: out, filled, holes: colour.size };
  }
  // Whether a drawing is mostly thin lines (outlines.thin_lines)
  function thin(drawn, w, h) {
    const r = rule();
    let total = 0;
    for (let p = 0; p < drawn.length; p++) total += drawn[p];
    if (total < r.thin_min_painted * h * w) return false;
    const radius = Math.max(1, roundEven(r.thin_width / 2 * Math.max(h, w) / 256));
    let eroded = drawn;
    for (let i = 0; i < radius; i++) eroded = erode(eroded, w, h);
    let left = 0;
    for (let p = 0; p < eroded.length; p++) left += eroded[p];
    return left < r.thin_share * total;
  }
  return { over, painted, fill, thin, dilate };
})();

// The drawing the fill rule reads: Paint, the sheet with its strokes (drawn = differs from white); a photo,
// the photo with its strokes (drawn = the paint layer's pixels). The mask-only and strength layers never count.
function drawingNow() {
  const n = W * H, paint = pixels(layers[0]).data;
  const rgb = Outlines.over(pixels(bg).data, paint, n);
  let drawn = null;
  if (mode === 'photo') {
    drawn = new Uint8Array(n);
    for (let p = 0; p < n; p++) drawn[p] = paint[p * 4 + 3] ? 1 : 0;
  }
  return { rgb, drawn };
}
function fillData() { return fillEmpty ? null : pixels(fillLayer); }
function putFill(data) {
  const c = ctxOf(fillLayer);
  c.clearRect(0, 0, W, H);
  if (data) c.putImageData(data, 0, 0);
  fillEmpty = !data;
  touch(fillLayer);
}
function sameFill(a, b) {
  if (!a || !b) return a === b;
  const x = a.data, y = b.data;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
// The fill of the drawing as it is now (null: nothing to fill)
function computeFill() {
  const { rgb, drawn } = drawingNow();
  const result = Outlines.fill(rgb, W, H, drawn);
  if (!result.holes) return null;
  const data = new ImageData(W, H), d = data.data;
  for (let p = 0; p < W * H; p++) {
    if (!result.filled[p]) continue;
    d[p * 4] = result.rgb[p * 3]; d[p * 4 + 1] = result.rgb[p * 3 + 1]; d[p * 4 + 2] = result.rgb[p * 3 + 2];
    d[p * 4 + 3] = 255;
  }
  return data;
}
// After a change of the drawing: while the switch is on, the fill follows it, as an undo step of its own
// (undoing it takes the fill off and turns the switch off, so the model gets what the canvas shows).
function refill(asStep) {
  if (!autoFill) return false;
  const next = computeFill(), before = fillData();
  if (sameFill(next, before)) return false;
  if (asStep) pushUndo({ W, H, fill: before, auto: false });
  putFill(next);
  return true;
}
function setAutoFill(on) {
  autoFill = !!on;
  fillBox.checked = autoFill;
}
fillBox.addEventListener('change', () => {
  window.__sdeditLastCanvas = root;
  const before = fillData();
  pushUndo({ W, H, fill: before, auto: autoFill });
  setAutoFill(fillBox.checked);
  if (autoFill) refill(false); else putFill(null);
  changed();
});
function withFill(rgb) {  // the drawing's pixels with the fill layer on top (its pixels are opaque)
  if (fillEmpty) return rgb;
  const out = rgb.slice(), f = pixels(fillLayer).data;
  for (let p = 0; p < W * H; p++) if (f[p * 4 + 3]) for (let c = 0; c < 3; c++) out[p * 3 + c] = f[p * 4 + c];
  return out;
}
function showHint() {  // the hint when the drawing (with its fill) is still mostly thin lines
  const { rgb, drawn } = drawingNow();
  let lines = drawn;
  if (mode === 'photo') {
    if (!fillEmpty) {
      const f = pixels(fillLayer).data;
      for (let p = 0; p < W * H; p++) if (f[p * 4 + 3]) lines[p] = 1;
    }
  } else lines = Outlines.painted(withFill(rgb), W * H);
  hintText.textContent = known.hint || '';
  hintText.hidden = !hintText.textContent || !Outlines.thin(lines, W, H);
}

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
    if (!fillEmpty) vctx.drawImage(fillLayer, 0, 0);
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

// ----- undo: each entry is the state to go back to (only the parts a step changed) ---------------------
function pushUndo(s) {
  undo.push(s);
  if (undo.length > UNDO_MAX) undo.shift();
}
function state(withBg, layer) {  // the parts a step may change, as they are now
  const s = { W, H, fill: fillData(), auto: autoFill };
  if (layer === undefined) s.layers = layers.map((l) => pixels(l));
  else { s.layer = layer; s.data = pixels(layers[layer]); }
  if (withBg) s.bg = pixels(bg);
  return s;
}
function snapshot(withBg) { pushUndo(state(withBg)); }
function snapshotLayer(i) { pushUndo(state(false, i)); }
function restore() {
  const s = undo.pop();
  if (!s) return false;
  if (s.W !== W || s.H !== H) size(s.W, s.H);
  if (s.bg) { ctxOf(bg).putImageData(s.bg, 0, 0); bgURL = null; }
  if (s.layers) s.layers.forEach((d, i) => { ctxOf(layers[i]).putImageData(d, 0, 0); touch(layers[i]); });
  if (s.data) { ctxOf(layers[s.layer]).putImageData(s.data, 0, 0); touch(layers[s.layer]); }
  putFill(s.fill);
  setAutoFill(s.auto);
  return true;
}
$('.sdl-undo').addEventListener('click', () => { if (restore()) changed(); });
$('.sdl-clear').addEventListener('click', () => {
  snapshot(mode === 'paint');
  layers.forEach((l) => { ctxOf(l).clearRect(0, 0, W, H); touch(l); });
  putFill(null);
  if (mode === 'paint') whiteBg();
  setAutoFill(defaultAutoFill());  // starting over: the canvas's default
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
function target() { return mode === 'photo' ? active : 0; }
function paintColor() {  // what the active layer is painted with
  const grey = Math.round(level * 255);
  return (mode === 'photo' && active === 1) ? '#ffffff'
    : (mode === 'photo' && active === 2) ? `rgb(${grey},${grey},${grey})` : color;
}
function strokeCtx() {
  const c = ctxOf(layers[target()]);
  c.lineCap = 'round'; c.lineJoin = 'round';
  c.lineWidth = Number(sizeInput.value) * Math.max(W, H) / BRUSH_SIDE;
  c.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
  c.strokeStyle = c.fillStyle = paintColor();
  return c;
}
view.addEventListener('pointerdown', (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  palette.hidden = true;
  if (tool === 'bucket') { bucket(...point(e)); return; }
  view.setPointerCapture(e.pointerId);
  snapshotLayer(target());
  touch(layers[target()]);
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
  edited();
}
view.addEventListener('pointerup', endStroke);
view.addEventListener('pointercancel', endStroke);

// The bucket: the region of the picture as shown (4-connected pixels within the paint threshold of the one
// clicked) takes the active layer's colour; it also reaches one pixel under a stroke's soft edge, beneath it.
function parseColor(c) {
  const x = document.createElement('canvas').getContext('2d');
  x.fillStyle = c; x.fillRect(0, 0, 1, 1);
  return x.getImageData(0, 0, 1, 1).data;
}
function bucket(fx, fy) {
  const x0 = Math.floor(fx), y0 = Math.floor(fy);
  if (x0 < 0 || y0 < 0 || x0 >= W || y0 >= H) return;
  const n = W * H, shownRGB = withFill(Outlines.over(pixels(bg).data, pixels(layers[0]).data, n));
  const t = known.rule.paint_threshold, s = (y0 * W + x0) * 3;
  const same = new Uint8Array(n);
  for (let p = 0; p < n; p++) {
    const i = p * 3;
    same[p] = Math.max(Math.abs(shownRGB[i] - shownRGB[s]), Math.abs(shownRGB[i + 1] - shownRGB[s + 1]),
      Math.abs(shownRGB[i + 2] - shownRGB[s + 2])) <= t ? 1 : 0;
  }
  const region = new Uint8Array(n), queue = [y0 * W + x0];
  region[queue[0]] = 1;
  for (let k = 0; k < queue.length; k++) {
    const p = queue[k], x = p % W;
    for (const q of [x > 0 ? p - 1 : -1, x < W - 1 ? p + 1 : -1, p >= W ? p - W : -1, p + W < n ? p + W : -1]) {
      if (q >= 0 && same[q] && !region[q]) { region[q] = 1; queue.push(q); }
    }
  }
  const edge = Outlines.dilate(region, W, H), rgba = parseColor(paintColor());
  const i = target();
  snapshotLayer(i);
  const layer = pixels(layers[i]), d = layer.data;
  for (let p = 0; p < n; p++) {
    const j = p * 4;
    if (region[p]) { d[j] = rgba[0]; d[j + 1] = rgba[1]; d[j + 2] = rgba[2]; d[j + 3] = 255; }
    else if (edge[p] && d[j + 3]) {  // a stroke's soft edge stays on top of the new colour
      const a = d[j + 3] / 255;
      for (let c = 0; c < 3; c++) d[j + c] = Math.round(d[j + c] * a + rgba[c] * (1 - a));
      d[j + 3] = 255;
    }
  }
  ctxOf(layers[i]).putImageData(layer, 0, 0);
  touch(layers[i]);
  edited();
}

// After a stroke or a bucket fill: the fill follows the paint layer, then everything that shows it.
function edited() {
  if (target() === 0) refill(true);
  changed();
}

// ----- images in -------------------------------------------------------------------------------------
function loadImage(src) {
  return new Promise((ok, fail) => { const i = new Image(); i.onload = () => ok(i); i.onerror = fail; i.src = src; });
}
async function useImage(image) {  // an upload, paste or drop
  window.__sdeditLastCanvas = root;  // Ctrl+Z undoes it
  snapshot(true);
  if (mode === 'paint') {  // fitted onto the square canvas, on white, centred
    size(SIDE, SIDE); whiteBg();
    const s = SIDE / Math.max(image.width, image.height);
    const w = Math.round(image.width * s), h = Math.round(image.height * s);
    ctxOf(bg).drawImage(image, (SIDE - w) / 2, (SIDE - h) / 2, w, h);
  } else {
    const s = Math.min(1, MAX_SIDE / Math.max(image.width, image.height));
    size(Math.max(8, Math.round(image.width * s)), Math.max(8, Math.round(image.height * s)));
    whiteBg();
    ctxOf(bg).drawImage(image, 0, 0, W, H);
  }
  layers.forEach((l) => { ctxOf(l).clearRect(0, 0, W, H); touch(l); });
  putFill(null);
  bgURL = null;
  refill(false);  // part of the same step: Ctrl+Z takes the picture and its fill off together
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
  const fillImage = v.fill ? await loadImage(v.fill) : null;
  size(bgImage ? bgImage.width : SIDE, bgImage ? bgImage.height : SIDE);
  whiteBg();
  if (bgImage) ctxOf(bg).drawImage(bgImage, 0, 0);
  layers.forEach((l, i) => {
    const c = ctxOf(l);
    c.clearRect(0, 0, W, H);
    if (layerImages[i]) c.drawImage(layerImages[i], 0, 0, W, H);
  });
  putFill(null);
  layerImages.forEach((im, i) => {  // what was given, kept as given where the canvas holds it pixel for pixel
    if (!im) urls.set(layers[i], null);
    else if (im.width === W && im.height === H) urls.set(layers[i], v.layers[i]);
  });
  if (fillImage) {
    ctxOf(fillLayer).drawImage(fillImage, 0, 0, W, H); fillEmpty = false;
    if (fillImage.width === W && fillImage.height === H) urls.set(fillLayer, v.fill);
  }
  if (typeof v.auto_fill === 'boolean') setAutoFill(v.auto_fill);
  refill(false);
  bgURL = v.background || null;
  synced = text;
  render();
  showHint();
  requestPreview();
  // where the canvas holds something else than it was given (its fill, its switch), Generate reads the canvas
  const now = currentValue(), given = (v.layers || []).concat([null, null, null]);
  if (now.background !== v.background || now.fill !== (v.fill || null) || now.auto_fill !== v.auto_fill
    || now.layers.some((u, i) => u !== (given[i] || null))) setTimeout(sync, 0);
}

// ----- the value (what Generate reads) and the preview -----------------------------------------------
function changed() {
  render();
  showHint();
  requestPreview();
  setTimeout(sync, 0);  // after the preview's request has left
}
function layerURL(l) {  // null for an empty layer
  if (!urls.has(l)) {
    const d = ctxOf(l).getImageData(0, 0, W, H).data;
    let url = null;
    for (let i = 3; i < d.length; i += 4) if (d[i]) { url = l.toDataURL('image/png'); break; }
    urls.set(l, url);
  }
  return urls.get(l);
}
function currentValue() {
  if (!bgURL) bgURL = bg.toDataURL('image/png');
  return { background: bgURL, layers: mode === 'photo' ? layers.map(layerURL) : [layerURL(layers[0])],
    fill: layerURL(fillLayer), auto_fill: autoFill, width: W, height: H };
}
root.sdlValue = () => currentValue();  // the value as Generate will read it (the browser tests read it here)
function sync() {
  const v = JSON.stringify(currentValue());
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
  if (!fillEmpty) x.drawImage(fillLayer, 0, 0, c.width, c.height);
  return c;
}
function maskSmall(w, h) {  // every painted pixel of the paint, mask-only and fill layers, white on black
  const c = document.createElement('canvas'); c.width = w; c.height = h;
  const x = c.getContext('2d');
  x.drawImage(layers[0], 0, 0, w, h); x.drawImage(layers[1], 0, 0, w, h);
  if (!fillEmpty) x.drawImage(fillLayer, 0, 0, w, h);
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
  const settings = known.live || {};
  const mask = mode === 'photo' ? maskSmall(guide.width, guide.height) : null;
  const strength = mode === 'photo' ? strengthSmall(guide.width, guide.height, mask) : null;
  const payload = { visitor, seq: mine, guide: guide.toDataURL('image/png'), settings,
    mask: mask ? mask.toDataURL('image/png') : null, strength_map: strength ? strength.toDataURL('image/png') : null,
    keep_details: autoFill };  // the guide help switch: the guide carries the fill, the server keeps the details
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
  const model = (known.live || {}).model || null;
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
function defaultAutoFill() { return known.auto_fill === undefined ? mode === 'paint' : !!known.auto_fill; }
buildPalette(known.palette);
sizeInput.value = String(known.brush_size); $('.sdl-size-text').textContent = sizeInput.value;
setAutoFill(defaultAutoFill());
let paletteKey = JSON.stringify(known.palette || []);
// The model changed the paint canvas's size: a square paint canvas at the old size (blank or painted) is scaled
// to the new one, so the drawing goes on at the detail the model paints at. Strokes are flat colours: scaled by
// nearest neighbour, they stay the colours they were (the fill rule reads exact colours).
function resizeSide(side) {
  const old = SIDE;
  SIDE = side;
  if (mode !== 'paint' || W !== old || H !== old || side === old) return;
  const copy = (c) => { const k = document.createElement('canvas'); k.width = W; k.height = H; ctxOf(k).drawImage(c, 0, 0); return k; };
  const saved = [bg, ...layers, fillLayer].map(copy), wasEmpty = fillEmpty;
  size(side, side);
  [bg, ...layers, fillLayer].forEach((c, i) => {
    const x = ctxOf(c);
    x.imageSmoothingEnabled = i === 0;  // the background (a photo, an example) smoothly; the strokes exactly
    x.drawImage(saved[i], 0, 0, side, side);
    x.imageSmoothingEnabled = true;
    touch(c);
  });
  fillEmpty = wasEmpty;
  bgURL = null;
  refill(false);
  changed();
}
watch(Object.keys(props), () => {
  remember();
  const side = Number(known.canvas_size);
  if (side && side !== SIDE) resizeSide(side);
  if (props.value && props.value !== synced) loadValue(props.value);
  const k = JSON.stringify(known.palette || []);
  if (k !== paletteKey) { paletteKey = k; buildPalette(known.palette); }
  checkPolicy().then(() => { if (liveOn()) requestPreview(); });
});
size(SIDE, SIDE); whiteBg(); render();
say('Paint: the preview follows every stroke.');
loadValue(props.value);
