// Shared set-up of the browser tests: the demo server on a free local port and Debian's
// Chromium, with or without SwiftShader's WebGPU.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('../..', import.meta.url));

const freePort = () => new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

export async function startServer() {
  const port = await freePort();
  const child = spawn(process.execPath, ['tools/serve.mjs', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => { if (String(d).includes('http://')) resolve(); });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, close: () => child.kill() };
}

const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader'];

export async function launch({ webgpu, extraArgs = [] }) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...BASE_FLAGS, ...(webgpu ? WEBGPU_FLAGS : []), ...extraArgs],
  });
}

// Runs in the page: starts the app's worker and returns `ask(message)`, which resolves with
// the worker's next non-progress message.
export function workerClient() {
  const worker = new Worker('/worker.js', { type: 'module' });
  window.ask = (msg, transfer = []) => new Promise((resolve) => {
    worker.onmessage = ({ data }) => { if (data.status !== 'loading') resolve(data); };
    worker.postMessage(msg, transfer);
  });
}

// Runs in the page: the four-colour scene of tests/semantic.rs as RGBA.
export function colourScene() {
  const [w, h] = [448, 336];
  const g = new OffscreenCanvas(w, h).getContext('2d');
  for (const [colour, x, y, rw, rh] of [['rgb(0,0,255)', 0, 0, 448, 336], ['rgb(255,0,0)', 0, 0, 192, 144],
    ['rgb(0,255,0)', 0, 192, 256, 144], ['rgb(255,255,0)', 288, 48, 128, 128]]) {
    g.fillStyle = colour;
    g.fillRect(x, y, rw, rh);
  }
  return { rgba: new Uint8Array(g.getImageData(0, 0, w, h).data.buffer), width: w, height: h };
}

// As a person would: drop the colour scene onto the page (a file dragged from the desktop),
// type the colour words, pick the fast prompts and press Segment; waits for "Done.".
export async function dropSceneAndSegment(page) {
  await page.evaluate(`window.colourScene = ${colourScene}`);
  await page.evaluate(async () => {
    const { rgba, width, height } = colourScene();
    const canvas = new OffscreenCanvas(width, height);
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer), width, height), 0, 0);
    const file = new File([await canvas.convertToBlob({ type: 'image/png' })], 'scene.png', { type: 'image/png' });
    const drop = new DragEvent('drop', { dataTransfer: new DataTransfer(), bubbles: true, cancelable: true });
    drop.dataTransfer.items.add(file);
    document.body.dispatchEvent(drop);
  });
  await page.fill('#labels', 'yellow, green, red, blue');
  await page.click('summary');
  await page.selectOption('#templates', 'single');
  await page.waitForFunction(() => !document.getElementById('segment').disabled);
  await page.click('#segment');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'Done.', null, { timeout: 120_000 });
}

// The page's mask palette (www/masks.js) for labels 1-4.
export const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]];

// After dropSceneAndSegment: at one probe inside each colour region, the label (1-based, in the
// typed order "yellow, green, red, blue") whose mask colour blended over the scene is nearest
// to the drawn pixel, next to the label that region should get.
export async function probeRegions(page) {
  const probes = [[50, 50, 3], [50, 300, 2], [430, 300, 4], [350, 100, 1]];
  const seen = await page.evaluate((probes) => {
    const ctx = document.getElementById('view').getContext('2d');
    return probes.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
  }, probes);
  const scene = { 1: [255, 255, 0], 2: [0, 255, 0], 3: [255, 0, 0], 4: [0, 0, 255] };
  return probes.map(([x, y, label], i) => {
    const blend = (l) => scene[label].map((v, k) => Math.round(v * 0.4 + PALETTE[l - 1][k] * 0.6));
    const distance = (a, b) => a.reduce((sum, v, k) => sum + (v - b[k]) ** 2, 0);
    const nearest = [1, 2, 3, 4].sort((a, b) => distance(seen[i], blend(a)) - distance(seen[i], blend(b)))[0];
    return { x, y, label, nearest, seen: seen[i] };
  });
}
