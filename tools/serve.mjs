// Static server for the demo: serves www/ at / and pkg/ at /pkg/ with correct MIME types
// (browsers refuse to compile .wasm served as anything but application/wasm, and ES modules
// and workers do not load from file:// URLs at all, hence a server).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const port = Number(process.argv[2] || process.env.PORT || 8080);
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.svg': 'image/svg+xml', '.safetensors': 'application/octet-stream', '.bin': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8', '.webmanifest': 'application/manifest+json', '.ts': 'text/plain; charset=utf-8',
};

function locate(url) {
  const path = normalize(decodeURIComponent(new URL(url, 'http://x').pathname));
  if (path.startsWith('/pkg/')) return join(root, path);
  if (path.startsWith('/tests/fixtures/')) return join(root, path);
  return join(root, 'www', path === '/' ? 'index.html' : path);
}

createServer(async (req, res) => {
  const file = locate(req.url);
  if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    if (!(await stat(file)).isFile()) throw new Error('not a file');
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': types[extname(file)] || 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-cache',
    });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${req.url}\n`);
  }
}).listen(port, '127.0.0.1', () => console.log(`wordmask demo: http://localhost:${port}/`));
