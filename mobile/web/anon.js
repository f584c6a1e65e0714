// The anonymization pipeline in the browser: the same steps and numbers as privacy_anon/runtime
// (bundle checks, BlazeFace decoding, weighted NMS, tracker with hold, enlarge, crop, M, paste)
// with both models run by LiteRT.js. Nothing here touches the DOM or the network: pixels come in
// as RGB(A) arrays, and the caller decides what to show. A frame whose detection or
// modification fails comes back black (fail closed).

export const FORMAT = 'privacy-anon-bundle';
export const FORMAT_VERSION = 1;
const REQUIRED = ['modifier.tflite', 'face_detector.tflite'];
const INPUT_SIZE = 192, GRID = 48, RAW_SCORE_LIMIT = 80, TILE_PER_MIN_FACE = 8, EDGE_MARGIN = 0.01, ZOOM_MIN_FACE = 0.2;
const f32 = Math.fround;

export class BundleError extends Error {}

// ------------------------------------------------------------------ bundle

/** The files of a .zip (at the top or inside one folder), by base name. */
export async function readZip(bytes, where) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) { end = i; break; }
  }
  if (end < 0) throw new BundleError(`${where}: not a readable bundle folder or .zip (no zip directory)`);
  const count = view.getUint16(end + 10, true);
  let p = view.getUint32(end + 16, true);
  const files = new Map();
  for (let k = 0; k < count; k++) {
    if (view.getUint32(p, true) !== 0x02014b50) throw new BundleError(`${where}: not a readable bundle .zip (bad directory)`);
    const method = view.getUint16(p + 10, true), packedSize = view.getUint32(p + 20, true), size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true), extraLen = view.getUint16(p + 30, true), commentLen = view.getUint16(p + 32, true);
    const local = view.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    p += 46 + nameLen + extraLen + commentLen;
    const base = name.split('/').pop();
    if (!base || !(base === 'bundle.json' || REQUIRED.includes(base))) continue;
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const packed = bytes.subarray(start, start + packedSize);
    if (method === 0) files.set(base, packed.slice());
    else if (method === 8) {
      const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
      files.set(base, new Uint8Array(await new Response(stream).arrayBuffer()));
    } else throw new BundleError(`${where}!${name}: unsupported zip compression ${method}`);
    if (files.get(base).length !== size) throw new BundleError(`${where}!${name}: damaged zip entry`);
  }
  return files;
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Checks a bundle as privacy_anon/runtime/bundle.py does; throws a BundleError whose message is
 * one line naming the file. `files` maps file names to bytes; `where` prefixes them ("bundle/").
 */
export async function checkBundle(files, where) {
  const mw = where + 'bundle.json';
  if (!files.has('bundle.json')) throw new BundleError(`${mw}: missing (not a privacy-anon bundle)`);
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(files.get('bundle.json')));
  } catch (e) {
    throw new BundleError(`${mw}: not valid JSON (${String(e.message).split('\n')[0]})`);
  }
  if (!manifest || typeof manifest !== 'object' || Array.isArray(manifest)) throw new BundleError(`${mw}: not a bundle manifest`);
  if (manifest.format !== FORMAT) throw new BundleError(`${mw}: not a privacy-anon bundle manifest (format ${JSON.stringify(manifest.format)})`);
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new BundleError(`${mw}: bundle format version ${JSON.stringify(manifest.format_version)} is not supported ` +
      `(this runner reads version ${FORMAT_VERSION}); re-export the bundle`);
  }
  const size = Number(manifest.modifier && manifest.modifier.input_size);
  if (!(size >= 4) || !manifest.files || typeof manifest.files !== 'object') {
    throw new BundleError(`${mw}: incomplete manifest (needs modifier.input_size and files)`);
  }
  for (const name of REQUIRED) {
    const bytes = files.get(name);
    if (!bytes) throw new BundleError(`${where}${name}: missing from the bundle`);
    const expected = (manifest.files[name] || {}).sha256;
    if (!expected) throw new BundleError(`${where}${name}: no sha256 in bundle.json`);
    if (await sha256(bytes) !== expected) throw new BundleError(`${where}${name}: sha256 mismatch (file truncated or modified since export)`);
    if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(4, 8)) !== 'TFL3') {
      throw new BundleError(`${where}${name}: not a TFLite model (no TFL3 identifier)`);
    }
  }
  return manifest;
}

// ------------------------------------------------------------------ images (RGB, 3 bytes a pixel)

export class Rgb {
  constructor(width, height, data) {
    this.width = width; this.height = height;
    this.data = data || new Uint8Array(width * height * 3);
  }
  static fromRgba(rgba, width, height) {
    const out = new Rgb(width, height);
    for (let i = 0, j = 0; i < width * height; i++, j += 4) {
      out.data[i * 3] = rgba[j]; out.data[i * 3 + 1] = rgba[j + 1]; out.data[i * 3 + 2] = rgba[j + 2];
    }
    return out;
  }
  toRgba() {
    const out = new Uint8ClampedArray(this.width * this.height * 4);
    for (let i = 0; i < this.width * this.height; i++) {
      out[i * 4] = this.data[i * 3]; out[i * 4 + 1] = this.data[i * 3 + 1]; out[i * 4 + 2] = this.data[i * 3 + 2]; out[i * 4 + 3] = 255;
    }
    return out;
  }
  crop(x1, y1, x2, y2) {
    const w = x2 - x1, out = new Rgb(w, y2 - y1);
    for (let y = y1; y < y2; y++) out.data.set(this.data.subarray((y * this.width + x1) * 3, (y * this.width + x2) * 3), (y - y1) * w * 3);
    return out;
  }
  paste(patch, x1, y1) {
    for (let y = 0; y < patch.height; y++) {
      this.data.set(patch.data.subarray(y * patch.width * 3, (y + 1) * patch.width * 3), ((y + y1) * this.width + x1) * 3);
    }
  }
}

// cv2's INTER_LINEAR fixed-point path for uint8 (11-bit weights; the exact 2x shrink as a 2x2 average)
function taps(src, dst, clampWeights) {
  const scale = 1 / (dst / src);
  const lo = new Int32Array(dst), hi = new Int32Array(dst), w0 = new Int32Array(dst), w1 = new Int32Array(dst);
  for (let d = 0; d < dst; d++) {
    let f = f32((d + 0.5) * scale - 0.5);
    let s = Math.floor(f);
    f = f32(f - s);
    if (clampWeights) {
      if (s < 0) { f = 0; s = 0; }
      if (s >= src - 1) { f = 0; s = src - 1; }
    }
    lo[d] = Math.min(Math.max(s, 0), src - 1);
    hi[d] = Math.min(Math.max(s + 1, 0), src - 1);
    w0[d] = roundHalfEven(f32(f32(1 - f) * 2048));
    w1[d] = roundHalfEven(f32(f * 2048));
  }
  return { lo, hi, w0, w1 };
}

function roundHalfEven(v) {
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

export function resizeLinear(src, dw, dh) {
  if (dw === src.width && dh === src.height) return new Rgb(dw, dh, src.data.slice());
  if (src.width / dw === 2 && src.height / dh === 2) return half(src);
  const xt = taps(src.width, dw, true), yt = taps(src.height, dh, false);
  const out = new Rgb(dw, dh);
  const rowOf = (y) => {
    const r = new Int32Array(dw * 3), base = y * src.width * 3;
    for (let x = 0; x < dw; x++) for (let c = 0; c < 3; c++) {
      r[x * 3 + c] = src.data[base + xt.lo[x] * 3 + c] * xt.w0[x] + src.data[base + xt.hi[x] * 3 + c] * xt.w1[x];
    }
    return r;
  };
  const cache = new Map();
  const row = (y) => { if (!cache.has(y)) cache.set(y, rowOf(y)); return cache.get(y); };
  for (let y = 0; y < dh; y++) {
    const r0 = row(yt.lo[y]), r1 = row(yt.hi[y]), b0 = yt.w0[y], b1 = yt.w1[y];
    for (let i = 0; i < dw * 3; i++) {
      // Math.floor(x / 65536) is >> 16 without 32-bit overflow
      const v = (Math.floor(b0 * (r0[i] >> 4) / 65536) + Math.floor(b1 * (r1[i] >> 4) / 65536) + 2) >> 2;
      out.data[y * dw * 3 + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    for (const k of cache.keys()) if (k < yt.lo[y]) cache.delete(k);
  }
  return out;
}

function half(src) {
  const out = new Rgb(src.width / 2, src.height / 2), s = src.data, w = src.width;
  for (let y = 0; y < out.height; y++) for (let x = 0; x < out.width; x++) for (let c = 0; c < 3; c++) {
    const a = ((2 * y) * w + 2 * x) * 3 + c, b = ((2 * y + 1) * w + 2 * x) * 3 + c;
    out.data[(y * out.width + x) * 3 + c] = (s[a] + s[a + 3] + s[b] + s[b + 3] + 2) >> 2;
  }
  return out;
}

/** Area averaging for shrinking (cv2 INTER_AREA, within a grey level); bilinear if a side grows. */
export function resizeArea(src, dw, dh) {
  if (dw > src.width || dh > src.height) return resizeLinear(src, dw, dh);
  if (dw === src.width && dh === src.height) return new Rgb(dw, dh, src.data.slice());
  const sx = src.width / dw, sy = src.height / dh, out = new Rgb(dw, dh), norm = 1 / (sx * sy);
  for (let y = 0; y < dh; y++) {
    const y0 = y * sy, y1 = Math.min((y + 1) * sy, src.height);
    for (let x = 0; x < dw; x++) {
      const x0 = x * sx, x1 = Math.min((x + 1) * sx, src.width);
      let r = 0, g = 0, b = 0;
      for (let yy = Math.floor(y0); yy < y1; yy++) {
        const wy = Math.min(y1, yy + 1) - Math.max(y0, yy);
        for (let xx = Math.floor(x0); xx < x1; xx++) {
          const w = wy * (Math.min(x1, xx + 1) - Math.max(x0, xx)), i = (yy * src.width + xx) * 3;
          r += w * src.data[i]; g += w * src.data[i + 1]; b += w * src.data[i + 2];
        }
      }
      const o = (y * dw + x) * 3;
      out.data[o] = Math.round(r * norm); out.data[o + 1] = Math.round(g * norm); out.data[o + 2] = Math.round(b * norm);
    }
  }
  return out;
}

// ------------------------------------------------------------------ boxes

function area(b) { return f32(Math.max(f32(b[2] - b[0]), 0) * Math.max(f32(b[3] - b[1]), 0)); }

export function iou(a, b) {
  const w = Math.max(f32(Math.min(a[2], b[2]) - Math.max(a[0], b[0])), 0);
  const h = Math.max(f32(Math.min(a[3], b[3]) - Math.max(a[1], b[1])), 0);
  const inter = f32(w * h), union = f32(f32(area(a) + area(b)) - inter);
  return union > 0 ? f32(inter / union) : 0;
}

function byScore(scores) {
  return scores.map((_, i) => i).sort((i, j) => (scores[j] - scores[i]) || (i - j));
}

/** Weighted NMS (BlazeFace's WEIGHTED mode), as privacy_anon.faces.boxes.weighted_nms. */
export function weightedNms(boxes, scores, thr) {
  let order = byScore(scores);
  const outBoxes = [], outScores = [];
  while (order.length) {
    const best = boxes[order[0]];
    const overlap = order.map((k) => iou(best, boxes[k]));
    overlap[0] = 1;
    const members = order.filter((_, k) => overlap[k] > thr);
    let total = 0;
    for (const m of members) total = f32(total + scores[m]);
    const denom = f32(Math.max(total, 1e-12));
    const box = [0, 0, 0, 0];
    for (const m of members) {
      const w = f32(scores[m] / denom);
      for (let c = 0; c < 4; c++) box[c] = f32(box[c] + f32(boxes[m][c] * w));
    }
    outBoxes.push(box);
    outScores.push(scores[order[0]]);
    order = order.filter((_, k) => overlap[k] <= thr);
  }
  return { boxes: outBoxes, scores: outScores };
}

/** Enlarged, clipped integer regions [x1, y1, x2, y2) (privacy_anon.baselines.face_regions). */
export function faceRegions(boxes, width, height, enlarge) {
  const half = f32(enlarge / 2), out = [];
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  for (const b of boxes) {
    const cx = f32(f32(b[0] + b[2]) / 2), cy = f32(f32(b[1] + b[3]) / 2);
    const hw = f32(f32(b[2] - b[0]) * half), hh = f32(f32(b[3] - b[1]) * half);
    const r = [Math.floor(clip(f32(cx - hw), width)), Math.floor(clip(f32(cy - hh), height)),
      Math.ceil(clip(f32(cx + hw), width)), Math.ceil(clip(f32(cy + hh), height))];
    if (r[2] > r[0] && r[3] > r[1]) out.push(r);
  }
  return out;
}

/** Keeps lost faces anonymized for `hold` frames and steadies boxes (privacy_anon BoxTracker). */
export class BoxTracker {
  constructor(hold = 5, smoothing = 0.5, matchIou = 0.3) {
    this.hold = hold; this.smoothing = smoothing; this.matchIou = f32(matchIou);
    this.reset();
  }
  reset() { this.tracks = []; this.missed = []; }
  update(dets, scores) {
    const trackOf = new Array(dets.length).fill(-1);
    if (dets.length && this.tracks.length) {
      const free = this.tracks.map(() => true);
      for (const d of byScore(scores)) {
        let best = 0, bestIou = -2;
        this.tracks.forEach((t, k) => { const v = free[k] ? iou(dets[d], t) : -1; if (v > bestIou) { bestIou = v; best = k; } });
        if (bestIou >= this.matchIou) { trackOf[d] = best; free[best] = false; }
      }
    }
    const s = f32(this.smoothing), r = f32(1 - this.smoothing), out = [], boxes = [], missed = [], matched = new Set();
    dets.forEach((raw, d) => {
      const t = trackOf[d];
      let smooth = raw;
      if (t >= 0) { matched.add(t); smooth = raw.map((v, c) => f32(f32(s * this.tracks[t][c]) + f32(r * v))); }
      boxes.push(smooth); missed.push(0);
      out.push([Math.min(smooth[0], raw[0]), Math.min(smooth[1], raw[1]), Math.max(smooth[2], raw[2]), Math.max(smooth[3], raw[3])]);
    });
    this.tracks.forEach((t, k) => {
      if (matched.has(k)) return;
      const m = this.missed[k] + 1;
      if (m <= this.hold) { boxes.push(t); missed.push(m); out.push(t); }
    });
    this.tracks = boxes; this.missed = missed;
    return out;
  }
}

// ------------------------------------------------------------------ models

/** One .tflite model on LiteRT.js (WebAssembly/XNNPACK). */
export class LiteRtModel {
  static async create(litert, bytes, name) {
    const m = new LiteRtModel();
    m.litert = litert; m.name = name;
    try {
      m.model = await litert.loadAndCompile(bytes, { accelerator: 'wasm' });
    } catch (e) {
      throw new BundleError(`${name}: not a loadable TFLite model (${String(e.message || e).split('\n')[0]})`);
    }
    m.inputs = m.model.getInputDetails();
    m.outputs = m.model.getOutputDetails();
    return m;
  }
  /** Runs one input; returns [{shape, data}] per output, in the model's output order. */
  async run(data, shape) {
    const input = new this.litert.Tensor(data, shape);
    let results;
    try {
      results = await this.model.run([input]);
    } finally {
      input.delete();
    }
    const out = [];
    for (const t of results) {
      const cpu = await t.moveTo('wasm');
      out.push({ shape: Array.from(this.outputs[out.length].shape), data: cpu.toTypedArray().slice() });
      cpu.delete();
      if (cpu !== t) t.delete();
    }
    return out;
  }
  delete() { this.model.delete(); }
}

// ------------------------------------------------------------------ pipeline

export class Anonymizer {
  /** `detector` and `modifier` are LiteRtModel-like (`run(data, shape)`); `manifest` is bundle.json. */
  constructor(detector, modifier, manifest, hold = 5, smoothing = 0.5) {
    const fd = manifest.face_detector || {};
    this.detector = detector; this.modifier = modifier;
    this.size = Number(manifest.modifier.input_size);
    this.enlarge = manifest.enlarge ?? 1.6;
    this.scoreThreshold = fd.score_threshold ?? 0.6; this.nmsIou = fd.nms_iou ?? 0.3;
    this.minFaceSize = fd.min_face_size ?? 40; this.zoomOut = fd.zoom_out ?? 2;
    this.tracker = new BoxTracker(hold, smoothing);
    this.anchors = Float32Array.from({ length: GRID }, (_, i) => f32(f32(i + 0.5) / GRID));
  }

  /** Checks tensor shapes (what the Python runtime checks when it loads the models). */
  static async create(litert, files, where, manifest) {
    const detector = await LiteRtModel.create(litert, files.get('face_detector.tflite'), where + 'face_detector.tflite');
    const modifier = await LiteRtModel.create(litert, files.get('modifier.tflite'), where + 'modifier.tflite');
    const s = Number(manifest.modifier.input_size);
    const shape = (d) => JSON.stringify(Array.from(d.shape));
    if (detector.inputs.length !== 1 || shape(detector.inputs[0]) !== '[1,192,192,3]' || detector.outputs.length !== 2) {
      throw new BundleError(`${where}face_detector.tflite: not BlazeFace full-range (input ${shape(detector.inputs[0])})`);
    }
    if (modifier.inputs.length !== 1 || modifier.outputs.length !== 1) {
      throw new BundleError(`${where}modifier.tflite: expected 1 input and 1 output, got ${modifier.inputs.length} and ${modifier.outputs.length}`);
    }
    if (shape(modifier.inputs[0]) !== `[1,${s},${s},3]` || shape(modifier.outputs[0]) !== `[1,${s},${s},3]`) {
      throw new BundleError(`${where}modifier.tflite: wrong tensor shapes (input ${shape(modifier.inputs[0])}, expected [1, ${s}, ${s}, 3])`);
    }
    return new Anonymizer(detector, modifier, manifest);
  }

  reset() { this.tracker.reset(); }

  windows(width, height) {
    const longer = Math.max(width, height), out = [[0, 0, width, height, longer]];
    if (this.zoomOut > 1) out.push([0, 0, width, height, roundHalfEven(this.zoomOut * longer)]);
    if (this.minFaceSize <= 0) return out;
    const starts = (length, side) => {
      if (side >= length) return [0];
      const step = Math.max(1, Math.floor(side / 2)), s = [];
      for (let v = 0; v < length - side; v += step) s.push(v);
      s.push(length - side);
      return s;
    };
    for (let side = roundHalfEven(TILE_PER_MIN_FACE * this.minFaceSize); side < longer; side *= 2) {
      const tw = Math.min(side, width), th = Math.min(side, height);
      for (const y0 of starts(height, th)) for (const x0 of starts(width, tw)) out.push([x0, y0, tw, th, Math.max(tw, th)]);
    }
    return out;
  }

  async detect(image) {
    const { width, height } = image, boxes = [], scores = [];
    for (const [x0, y0, w, h, side] of this.windows(width, height)) {
      const crop = image.crop(x0, y0, x0 + w, y0 + h);
      const scale = INPUT_SIZE / Math.max(side, w, h);
      const nw = Math.max(1, roundHalfEven(w * scale)), nh = Math.max(1, roundHalfEven(h * scale));
      const small = scale < 1 ? resizeArea(crop, nw, nh) : resizeLinear(crop, nw, nh);
      const ox = Math.floor((INPUT_SIZE - nw) / 2), oy = Math.floor((INPUT_SIZE - nh) / 2);
      const input = new Float32Array(INPUT_SIZE * INPUT_SIZE * 3).fill(-1);
      for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) for (let c = 0; c < 3; c++) {
        input[((y + oy) * INPUT_SIZE + x + ox) * 3 + c] = f32(f32(small.data[(y * nw + x) * 3 + c] / 127.5) - 1);
      }
      const outs = await this.detector.run(input, [1, INPUT_SIZE, INPUT_SIZE, 3]);
      const reg = (outs.find((o) => o.shape[o.shape.length - 1] === 16) || {}).data;
      const cls = (outs.find((o) => o.shape[o.shape.length - 1] === 1) || {}).data;
      if (!reg || !cls || reg.length !== GRID * GRID * 16 || cls.length !== GRID * GRID) throw new Error('face detector: not BlazeFace outputs');
      const sx = w / nw, sy = h / nh, whole = w === width && h === height;
      for (let i = 0; i < GRID * GRID; i++) {
        const logit = Math.min(Math.max(cls[i], -RAW_SCORE_LIMIT), RAW_SCORE_LIMIT);
        const score = f32(1 / (1 + Math.exp(-logit)));
        if (score < this.scoreThreshold) continue;
        const ax = f32(this.anchors[i % GRID] * INPUT_SIZE), ay = f32(this.anchors[Math.floor(i / GRID)] * INPUT_SIZE);
        const cx = f32(reg[i * 16] + ax), cy = f32(reg[i * 16 + 1] + ay), hw = f32(reg[i * 16 + 2] / 2), hh = f32(reg[i * 16 + 3] / 2);
        const b = [f32((f32(cx - hw) - ox) * sx + x0), f32((f32(cy - hh) - oy) * sy + y0),
          f32((f32(cx + hw) - ox) * sx + x0), f32((f32(cy + hh) - oy) * sy + y0)];
        if (!whole) {
          const mx = EDGE_MARGIN * w, my = EDGE_MARGIN * h;
          if ((x0 > 0 && b[0] < x0 + mx) || (y0 > 0 && b[1] < y0 + my) || (x0 + w < width && b[2] > x0 + w - mx) ||
              (y0 + h < height && b[3] > y0 + h - my)) continue;
        } else if (side > Math.max(width, height) && Math.max(b[2] - b[0], b[3] - b[1]) < ZOOM_MIN_FACE * Math.max(width, height)) continue;
        boxes.push(b); scores.push(score);
      }
    }
    return boxes.length ? weightedNms(boxes, scores, this.nmsIou) : { boxes: [], scores: [] };
  }

  async modify(crop) {
    const s = this.size;
    const small = (crop.width > s || crop.height > s) ? resizeArea(crop, s, s) : resizeLinear(crop, s, s);
    const d = this.modifier.inputs[0].dtype;
    const input = d === 'float32' ? Float32Array.from(small.data) : small.data;
    const [out] = await this.modifier.run(input, [1, s, s, 3]);
    const pixels = new Uint8Array(s * s * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.min(255, Math.max(0, Math.round(out.data[i])));
    const result = new Rgb(s, s, pixels);
    return crop.width === s && crop.height === s ? result : resizeLinear(result, crop.width, crop.height);
  }

  /** One frame (in video order). Returns {image, status: 'ok'|'masked', detections, regions, error}. */
  async process(image) {
    let found;
    try {
      found = await this.detect(image);
    } catch (e) {
      return this.masked(image, `detector: ${e.message || e}`);
    }
    const held = this.tracker.update(found.boxes, found.scores);
    try {
      const regions = faceRegions(held, image.width, image.height, this.enlarge);
      const out = new Rgb(image.width, image.height, image.data.slice());
      for (const [x1, y1, x2, y2] of regions) out.paste(await this.modify(image.crop(x1, y1, x2, y2)), x1, y1);
      return { image: out, status: 'ok', detections: found.boxes, scores: found.scores, regions, error: '' };
    } catch (e) {
      return this.masked(image, `modifier: ${e.message || e}`, found);
    }
  }

  masked(image, error, found) {
    return { image: new Rgb(image.width, image.height), status: 'masked', detections: found ? found.boxes : [],
      scores: found ? found.scores : [], regions: [], error: String(error).split('\n')[0] };
  }
}
