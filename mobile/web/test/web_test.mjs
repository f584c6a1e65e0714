// The browser runner in headless Chromium (Debian's, driven by playwright-core) against the
// Python runtime's golden vectors (mobile/golden.py): real LiteRT.js inference on the exported
// bundle, the image-file path (PNG in, PNG download out), a clip frame by frame (the tracker
// must hold the face the detector cannot see), a .zip bundle, and every broken bundle.
//
//   node mobile/web/test/web_test.mjs GOLDEN_DIR
//
// Passes when, per frame, the page finds the same faces as Python (boxes within 1 px), its
// output is identical to Python's outside the face regions and within PSNR >= 35 dB inside.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const GOLDEN = path.resolve(process.argv[2] || '');
const golden = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'golden.json'), 'utf8'));
const BUNDLE = golden.bundle;
const MIN_PSNR = 35;
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png' };

// a static server on the loopback: / is mobile/web, /golden/ the vectors, /bundle/ the bundle
const roots = { '/golden/': GOLDEN, '/bundle/': BUNDLE, '/': WEB };
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const prefix = Object.keys(roots).find((p) => url.startsWith(p));
  const file = path.join(roots[prefix], url.slice(prefix.length));
  if (!file.startsWith(roots[prefix]) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}/`;

// playwright gives each launch a fresh temporary profile (its own --user-data-dir)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const page = await browser.newPage();
const requests = [];
page.on('request', (r) => requests.push(r.url()));
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}: ${String(e.message).split('\n').slice(0, 6).join(' | ')}`);
  }
}

const arrays = golden.arrays;
const readU8 = (name) => new Uint8Array(fs.readFileSync(path.join(GOLDEN, arrays[name].file)));
const shapeOf = (name) => arrays[name].shape;

/** Compares one page result with Python's: faces, regions, pixels. Returns the PSNR inside. */
function compare(i, webOut, webRegions, webBoxes) {
  const f = golden.frames[i];
  const want = readU8(f.output), input = readU8(f.frame);
  const [h, w] = shapeOf(f.output);
  assert.equal(webBoxes.length, f.detections.length, `frame ${i}: ${webBoxes.length} faces, Python found ${f.detections.length}`);
  webBoxes.forEach((b, k) => b.forEach((v, c) => assert.ok(Math.abs(v - f.detections[k][c]) <= 1,
    `frame ${i} face ${k}: ${b} vs Python ${f.detections[k]}`)));
  assert.equal(webRegions.length, f.regions.length, `frame ${i}: regions ${JSON.stringify(webRegions)} vs ${JSON.stringify(f.regions)}`);
  webRegions.forEach((r, k) => r.forEach((v, c) => assert.ok(Math.abs(v - f.regions[k][c]) <= 1, `frame ${i}: region ${r} vs ${f.regions[k]}`)));
  const inside = new Uint8Array(w * h);
  for (const [x1, y1, x2, y2] of [...f.regions, ...webRegions]) for (let y = y1; y < y2; y++) inside.fill(1, y * w + x1, y * w + x2);
  let se = 0, n = 0, outsideDiff = 0, changed = 0;
  for (let p = 0; p < w * h; p++) for (let c = 0; c < 3; c++) {
    const a = webOut[p * 3 + c], b = want[p * 3 + c];
    if (inside[p]) { se += (a - b) ** 2; n++; if (a !== input[p * 3 + c]) changed++; } else if (a !== b) outsideDiff++;
  }
  assert.equal(outsideDiff, 0, `frame ${i}: ${outsideDiff} values differ from Python's outside the face regions`);
  const psnr = se === 0 ? Infinity : 10 * Math.log10(255 * 255 / (se / n));
  assert.ok(psnr >= MIN_PSNR, `frame ${i}: PSNR ${psnr.toFixed(1)} dB inside the face regions < ${MIN_PSNR}`);
  if (n) assert.ok(changed > n / 4, `frame ${i}: only ${changed} of ${n} values inside the regions changed: M did not run`);
  return psnr;
}

const report = { psnr: [], ms_per_frame: null };
try {
  await page.goto(base + 'index.html');
  await page.waitForFunction(() => window.privacyAnonReady === true);

  await check('bundle folder loads; both models compile in LiteRT.js', async () => {
    const size = await page.evaluate(async () => {
      const app = await import('./app.js');
      window.anon = await app.openUrl('/bundle/');
      window.app = app;
      return window.anon.size;
    });
    assert.equal(size, golden.settings.input_size);
  });

  await check('a clip frame by frame matches the Python runtime (the tracker holds the hidden face)', async () => {
    for (let i = 0; i < golden.frames.length; i++) {
      const f = golden.frames[i];
      const [h, w] = shapeOf(f.frame);
      const r = await page.evaluate(async ({ data, w, h, reset }) => {
        const { Rgb } = window.app;
        if (reset) window.anon.reset();
        const t = performance.now();
        const out = await window.anon.process(new Rgb(w, h, Uint8Array.from(atob(data), (c) => c.charCodeAt(0))));
        const ms = performance.now() - t;
        let s = '';
        for (let k = 0; k < out.image.data.length; k += 0x8000) s += String.fromCharCode(...out.image.data.subarray(k, k + 0x8000));
        return { status: out.status, error: out.error, regions: out.regions, boxes: out.detections, image: btoa(s), ms };
      }, { data: Buffer.from(readU8(f.frame)).toString('base64'), w, h, reset: f.reset_before });
      assert.equal(r.status, 'ok', `frame ${i}: ${r.error}`);
      report.psnr.push(compare(i, new Uint8Array(Buffer.from(r.image, 'base64')), r.regions, r.boxes));
      if (i === 2) assert.ok(f.detections.length === 0 && r.regions.length === 1, 'frame 2: the held face is anonymized');
    }
  });

  await check('image files: PNG in, PNG download out, same as Python', async () => {
    for (const [i, png] of Object.entries(golden.pngs)) {
      const r = await page.evaluate(async (url) => {
        const file = new File([await (await fetch(url)).blob()], 'frame.png', { type: 'image/png' });
        const { result, png } = await window.app.anonymizeImageFile(window.anon, file);
        // read the download back, as a user's viewer would
        const bitmap = await createImageBitmap(png);
        const px = window.app.pixelsOf(bitmap, bitmap.width, bitmap.height);
        let s = '';
        for (let k = 0; k < px.data.length; k += 0x8000) s += String.fromCharCode(...px.data.subarray(k, k + 0x8000));
        return { status: result.status, regions: result.regions, boxes: result.detections, image: btoa(s), type: png.type };
      }, '/golden/' + png);
      assert.equal(r.type, 'image/png');
      assert.equal(r.status, 'ok');
      report.psnr.push(compare(Number(i), new Uint8Array(Buffer.from(r.image, 'base64')), r.regions, r.boxes));
    }
  });

  await check('a video file: every frame anonymized in order, a WebM download', async () => {
    // the clip's frames recorded into a WebM by the page itself (no codec tools needed here)
    const r = await page.evaluate(async (urls) => {
      const frames = await Promise.all(urls.map(async (u) => createImageBitmap(await (await fetch(u)).blob())));
      const canvas = document.createElement('canvas');
      canvas.width = frames[0].width; canvas.height = frames[0].height;
      const ctx = canvas.getContext('2d'), stream = canvas.captureStream(0), rec = new MediaRecorder(stream, { mimeType: 'video/webm' });
      const chunks = [];
      rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
      const done = new Promise((ok) => { rec.onstop = ok; });
      rec.start();
      for (let k = 0; k < 12; k++) {
        ctx.drawImage(frames[k % frames.length], 0, 0);
        stream.getVideoTracks()[0].requestFrame();
        await new Promise((ok) => setTimeout(ok, 100));
      }
      rec.stop(); await done;
      const clip = new File(chunks, 'clip.webm', { type: 'video/webm' });
      const out = document.createElement('canvas'), seen = [];
      const res = await window.app.anonymizeVideoFile(window.anon, clip, out,
        { fps: 4, onFrame: (i, n, f) => seen.push([f.status, f.regions.length]) });
      return { frames: res.frames, masked: res.masked, bytes: res.webm.size, type: res.webm.type, seen };
    }, ['/golden/f0.png', '/golden/f4.png']);
    assert.ok(r.frames >= 2, `only ${r.frames} frames`);
    assert.equal(r.masked, 0);
    assert.equal(r.seen.length, r.frames);
    assert.ok(r.seen.every(([status, faces]) => status === 'ok' && faces >= 1), JSON.stringify(r.seen));
    assert.equal(r.type, 'video/webm');
    assert.ok(r.bytes > 1000, `${r.bytes} byte WebM`);
  });

  await check('a .zip bundle loads', async () => {
    const size = await page.evaluate(async () => (await window.app.openUrl('/golden/bundle.zip')).size);
    assert.equal(size, golden.settings.input_size);
  });

  await check('broken bundles: one line naming the file, as the Python runtime', async () => {
    for (const c of golden.bad_bundles) {
      const msg = await page.evaluate(async (url) => {
        try { await window.app.openUrl(url); return null; } catch (e) { return `${e.name}|${e.message}`; }
      }, `/golden/${c.path}/`);
      assert.ok(msg, `${c.name}: a broken bundle loaded`);
      const text = msg.split('|').slice(1).join('|');
      assert.ok(!text.includes('\n'), `${c.name}: not one line`);
      for (const word of c.expect) assert.ok(text.includes(word), `${c.name}: '${text}' lacks '${word}'`);
      assert.ok(text.startsWith(`/golden/${c.path}/`), `${c.name}: '${text}' does not name the file`);
    }
  });

  await check('a failing model masks the whole frame', async () => {
    const r = await page.evaluate(async () => {
      const a = window.anon, real = a.modifier.run;
      a.modifier.run = async () => { throw new Error('interpreter failed'); };
      const frame = new window.app.Rgb(64, 48, new Uint8Array(64 * 48 * 3).fill(200));
      try {
        a.reset();
        const fake = a.detect;  // a face in the middle, so M is called
        a.detect = async () => ({ boxes: [[20, 10, 44, 34]], scores: [0.9] });
        const out = await a.process(frame);
        a.detect = fake;
        return { status: out.status, error: out.error, max: Math.max(...out.image.data) };
      } finally { a.modifier.run = real; a.reset(); }
    });
    assert.equal(r.status, 'masked');
    assert.ok(r.error.startsWith('modifier:'));
    assert.equal(r.max, 0);
  });

  await check('speed: desktop Chromium, one 400x300 frame (4 detector windows + M)', async () => {
    const r = await page.evaluate(async () => {
      const frame = new window.app.Rgb(400, 300, new Uint8Array(400 * 300 * 3).fill(90));
      const a = window.anon, s = a.size, time = async (fn) => {
        await fn();
        const t = performance.now();
        for (let k = 0; k < 5; k++) await fn();
        return (performance.now() - t) / 5;
      };
      a.reset();
      const frameMs = await time(() => a.process(frame));
      const detMs = await time(() => a.detector.run(new Float32Array(192 * 192 * 3), [1, 192, 192, 3]));
      const modMs = await time(() => a.modifier.run(new Uint8Array(s * s * 3), [1, s, s, 3]));
      a.reset();
      return { frameMs, detMs, modMs };
    });
    report.ms_per_frame = Math.round(r.frameMs);
    report.detector_ms_per_window = +r.detMs.toFixed(1);
    report.modifier_ms_per_crop = +r.modMs.toFixed(1);
  });

  await check('nothing was fetched from outside this machine', async () => {
    const outside = requests.filter((u) => !u.startsWith(base) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(outside, []);
    assert.deepEqual(pageErrors, []);
  });
} finally {
  await browser.close();
  server.close();
}
console.log(`web: ${JSON.stringify({ psnr_db: report.psnr.map((p) => (p === Infinity ? 'inf' : +p.toFixed(1))), ms_per_frame: report.ms_per_frame,
  detector_ms_per_window: report.detector_ms_per_window, modifier_ms_per_crop: report.modifier_ms_per_crop })}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
