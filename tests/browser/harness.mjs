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
