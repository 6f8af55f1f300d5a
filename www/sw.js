// Service worker: keeps the app shell and the wasm core, so after one visit the page opens
// offline. Network first (a new build is picked up when online), the cache when offline.
// Model weights are not handled here: the model worker keeps them in its own cache.
const SHELL_CACHE = 'wordmask-shell-v8';
const SHELL = ['./', 'index.html', 'app.js', 'app.css', 'manifest.webmanifest', 'icon.svg', 'icon-192.png', 'icon-512.png', 'worker.js', 'cores.js', 'client.js', 'masks.js', 'point.js', 'download.js', 'modelfiles.js', 'loading.js', 'settings.js', 'word-mask.js', 'embed.html',
  'keyboard.js', 'probe.js', 'progressive.js', 'performance.js',
  'legend.js', 'palette.js', 'stages.js', 'unlabelled.js', 'words.js', 'objects.js', 'exports.js', 'folder.js', 'frames.js', 'video.js', 'idb.js', 'vendor/fflate.js',
  'samples/cat.jpg', 'samples/coffee.jpg', 'samples/rocket.jpg', '../pkg/wordmask.js', '../pkg/wordmask_bg.wasm']
  .map((path) => new URL(path, self.location).href);
// The CPU fallback's own modules (pkg/cpu-relaxed/, pkg/threads/, pkg/threads-relaxed/) are kept
// once they have been used.
const PKG = new URL('../pkg/', self.location).href;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  url.search = '';
  if (event.request.method !== 'GET' || !(SHELL.includes(url.href) || url.href.startsWith(PKG))) return;
  event.respondWith((async () => {
    const cache = await caches.open(SHELL_CACHE);
    try {
      const response = await fetch(event.request);
      if (response.ok) await cache.put(url.href, response.clone());
      return response;
    } catch (offline) {
      const cached = await cache.match(url.href);
      if (cached) return cached;
      throw offline;
    }
  })());
});
