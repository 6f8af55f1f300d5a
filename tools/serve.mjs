// Static server for the demo: serves www/ at / and pkg/ at /pkg/ with correct MIME types
// (browsers refuse to compile .wasm served as anything but application/wasm, and ES modules
// and workers do not load from file:// URLs at all, hence a server).
//   node tools/serve.mjs [PORT] [--mount /url/prefix/=folder ...] [--isolated] [--cors]
// Extra mounts (relative to the repository, or absolute) serve other folders, e.g. a model you
// host yourself. `--cors` lets pages of any origin load what it serves (as a CDN does: the
// component, its worker and the wasm modules from another origin). `--isolated` sends the cross-origin isolation headers (COOP same-origin, COEP
// require-corp) that multi-threaded WebAssembly (SharedArrayBuffer) needs; a host that serves the
// page with them must serve every cross-origin resource it loads with CORS or
// Cross-Origin-Resource-Policy (the Hugging Face hub sends CORS headers).
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.svg': 'image/svg+xml', '.safetensors': 'application/octet-stream', '.bin': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8', '.webmanifest': 'application/manifest+json', '.ts': 'text/plain; charset=utf-8',
};

/**
 * Serve the demo on 127.0.0.1:`port`; `mounts` maps URL prefixes (`/x/`) to folders (under the
 * repository, or absolute), the first prefix that matches winning; `isolated` adds the
 * cross-origin isolation headers, `cors` the headers that let any origin read the files;
 * `demo: false` serves the mounts alone (an unpacked package, a page of a test).
 */
export function serve(port, mounts = {}, { isolated = false, cors = false, demo = true } = {}) {
  const table = Object.entries(demo ? { '/pkg/': 'pkg', ...mounts, '/': 'www' } : mounts);
  const locate = (url) => {
    const path = normalize(decodeURIComponent(new URL(url, 'http://x').pathname));
    const mount = table.find(([p]) => path.startsWith(p));
    if (!mount) return null;
    const [prefix, folder] = mount;
    const rest = path.slice(prefix.length) || 'index.html';
    const base = resolve(root, folder);
    return { base, file: join(base, rest) };
  };
  // A 404 carries them too, so that a page of another origin sees the 404.
  const policy = {
    ...(isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp', 'cross-origin-resource-policy': 'same-origin' } : {}),
    ...(cors ? { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' } : {}),
  };
  const server = createServer(async (req, res) => {
    const found = locate(req.url);
    if (found && !found.file.startsWith(found.base)) { res.writeHead(403).end(); return; }
    try {
      if (!found) throw new Error('no mount');
      const { file } = found;
      if (!(await stat(file)).isFile()) throw new Error('not a file');
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': types[extname(file)] || 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-cache', ...policy,
      });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain', ...policy }).end(`not found: ${req.url}\n`);
    }
  });
  return new Promise((done) => server.listen(port, '127.0.0.1', () => done(server)));
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const args = process.argv.slice(2);
  const port = Number(args.find((a) => /^\d+$/.test(a)) || process.env.PORT || 8080);
  const mounts = Object.fromEntries(args.flatMap((a, i) => (args[i - 1] === '--mount' ? [a.split('=')] : [])));
  serve(port, mounts, { isolated: args.includes('--isolated'), cors: args.includes('--cors') }).then(() => console.log(`wordmask demo: http://localhost:${port}/`));
}
