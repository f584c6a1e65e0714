// Loads LiteRT.js from this folder's node_modules (no CDN: nothing leaves the device) and
// builds Anonymizers from a bundle folder, a .zip or a URL. Used by index.html and the tests.
import * as litert from '@litertjs/core';
import { Anonymizer, BundleError, Rgb, checkBundle, readZip } from './anon.js';

let loading = null;
function ready() {
  loading ??= litert.loadLiteRt(new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href);
  return loading;
}

/** files: Map name -> Uint8Array; where: "name/" or "name.zip!" for messages. */
export async function openBundle(files, where) {
  await ready();
  const manifest = await checkBundle(files, where);
  return Anonymizer.create(litert, files, where, manifest);
}

export async function openZip(bytes, where) {
  return openBundle(await readZip(bytes, where), where + '!');
}

/** A bundle served over HTTP (a folder URL ending in /, or a .zip URL). */
export async function openUrl(url) {
  if (url.endsWith('.zip')) {
    const r = await fetch(url);
    if (!r.ok) throw new BundleError(`${url}: bundle not found`);
    return openZip(new Uint8Array(await r.arrayBuffer()), url);
  }
  const files = new Map();
  for (const name of ['bundle.json', 'modifier.tflite', 'face_detector.tflite']) {
    const r = await fetch(url + name);
    if (r.ok) files.set(name, new Uint8Array(await r.arrayBuffer()));
  }
  return openBundle(files, url);
}

/** A folder picked with <input webkitdirectory> (its files) or a .zip File. */
export async function openPicked(fileList) {
  const list = Array.from(fileList);
  if (list.length === 1 && list[0].name.endsWith('.zip')) return openZip(new Uint8Array(await list[0].arrayBuffer()), list[0].name);
  const files = new Map();
  for (const f of list) files.set(f.name, new Uint8Array(await f.arrayBuffer()));
  const folder = list.length && list[0].webkitRelativePath ? list[0].webkitRelativePath.split('/')[0] + '/' : '';
  return openBundle(files, folder);
}

/** Pixels of a drawable (image, bitmap, video frame) through an offscreen canvas: never shown. */
export function pixelsOf(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, width, height);
  return Rgb.fromRgba(ctx.getImageData(0, 0, width, height).data, width, height);
}

/** Draws an anonymized frame into a (visible) canvas. */
export function draw(canvas, rgb) {
  canvas.width = rgb.width; canvas.height = rgb.height;
  canvas.getContext('2d').putImageData(new ImageData(rgb.toRgba(), rgb.width, rgb.height), 0, 0);
}

/** An image file -> {result, png: Blob} (the tracker is reset before and after). */
export async function anonymizeImageFile(anonymizer, file) {
  const bitmap = await createImageBitmap(file);
  anonymizer.reset();
  const result = await anonymizer.process(pixelsOf(bitmap, bitmap.width, bitmap.height));
  anonymizer.reset();
  const canvas = new OffscreenCanvas(result.image.width, result.image.height);
  canvas.getContext('2d').putImageData(new ImageData(result.image.toRgba(), result.image.width, result.image.height), 0, 0);
  return { result, png: await canvas.convertToBlob({ type: 'image/png' }) };
}

/**
 * A video file -> WebM Blob: played frame by frame (seeking at `fps`), each frame anonymized in
 * order, drawn into `canvas` and recorded from it, so only anonymized frames are recorded.
 */
export async function anonymizeVideoFile(anonymizer, file, canvas, { fps = 10, onFrame = () => {} } = {}) {
  const video = document.createElement('video');
  video.muted = true; video.playsInline = true;
  video.src = URL.createObjectURL(file);
  await new Promise((ok, fail) => { video.onloadedmetadata = ok; video.onerror = () => fail(new Error(`${file.name}: not a playable video`)); });
  const w = video.videoWidth, h = video.videoHeight, n = Math.max(1, Math.floor(video.duration * fps));
  canvas.width = w; canvas.height = h;
  const stream = canvas.captureStream(0);
  const track = stream.getVideoTracks()[0];
  const recorder = new MediaRecorder(stream, { mimeType: 'video/webm' });
  const chunks = [];
  recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  const stopped = new Promise((ok) => { recorder.onstop = ok; });
  recorder.start();
  anonymizer.reset();
  let masked = 0;
  for (let i = 0; i < n; i++) {
    video.currentTime = i / fps;
    await new Promise((ok) => { video.onseeked = ok; });
    const r = await anonymizer.process(pixelsOf(video, w, h));
    if (r.status !== 'ok') masked++;
    draw(canvas, r.image);
    track.requestFrame();
    onFrame(i, n, r);
  }
  anonymizer.reset();
  recorder.stop();
  await stopped;
  URL.revokeObjectURL(video.src);
  return { webm: new Blob(chunks, { type: 'video/webm' }), frames: n, masked };
}

export { Anonymizer, BundleError, Rgb };
