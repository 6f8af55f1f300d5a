// Model files are downloaded once and resumed where they stopped: after a dropped connection in
// the same session (a Range request for the rest), and after the tab was closed or reloaded in
// the middle, from the parts kept in the Cache Storage as they arrived. The model worker
// (worker.js) is the only user.
//
//   const response = await download(url, { signal, progress });   // progress(file, loaded, total, extra)
//   ...keep the response...
//   await forgetParts(url);
//
// Parts live in their own cache, keyed by the file's URL and the offset of their first byte;
// each records the file's total size and ETag, so that a resumed download of a file that has
// changed meanwhile starts again from byte 0 instead of splicing two versions together.

/** The cache of partly downloaded files (the whole files go to the worker's own cache). */
const PARTS = 'wordmask-partial-v1';

/** Retries after a broken download; each resumes where the last stopped. */
export const RETRIES = 3;

// How often what has arrived is written to the Cache Storage: a reload loses at most this much.
// A second is a few MB on a fast line; each write is one cache entry.
const FLUSH_MS = 1000;
const FLUSH_BYTES = 16 << 20;

/**
 * A download that failed: `code` 'network' (the host could not be reached or the connection
 * broke, `retry` makes sense) or 'http' (the host answered with an error `status`), and the
 * `host` asked.
 */
export class DownloadError extends Error {
  constructor(message, { code, host, status }) {
    super(message);
    Object.assign(this, { code, host, status });
  }
}

const partKey = (url, offset) => {
  const key = new URL(url);
  key.searchParams.set('wordmask-part', String(offset));
  return key.href;
};
const isPartOf = (url) => {
  const prefix = partKey(url, '');
  return (request) => request.url.startsWith(prefix);
};

async function openParts() {
  return (await globalThis.caches?.open(PARTS).catch(() => null)) ?? null;
}

/** Drop the kept parts of `url` (once the whole file is kept, or when they no longer fit). */
export async function forgetParts(url, parts) {
  const cache = parts ?? (await openParts());
  if (!cache) return;
  const keys = (await cache.keys()).filter(isPartOf(url));
  await Promise.all(keys.map((k) => cache.delete(k)));
}

// The parts of `url` kept by an earlier download, in order from byte 0 and of one version of
// the file: their blobs, how many bytes they hold, the file's total size, ETag and type.
async function keptParts(url, parts) {
  const none = { blobs: [], loaded: 0, total: 0, etag: null, type: null };
  if (!parts) return none;
  const keys = (await parts.keys()).filter(isPartOf(url));
  if (!keys.length) return none;
  const entries = await Promise.all(keys.map(async (request) => ({
    offset: Number(new URL(request.url).searchParams.get('wordmask-part')),
    response: await parts.match(request),
  })));
  entries.sort((a, b) => a.offset - b.offset);
  const kept = { ...none, total: Number(entries[0].response?.headers.get('x-total')) || 0, etag: entries[0].response?.headers.get('x-etag') || null };
  for (const { offset, response } of entries) {
    const same = response && Number(response.headers.get('x-total')) === kept.total && (response.headers.get('x-etag') || null) === kept.etag;
    if (offset !== kept.loaded || !same) break; // a gap or another version: keep what is whole
    const blob = await response.blob();
    kept.blobs.push(blob);
    kept.loaded += blob.size;
    kept.type = response.headers.get('content-type');
  }
  return kept;
}

/**
 * The whole body of `url` as one Response. `progress(file, loaded, total, extra)` is called
 * as bytes arrive; `extra` holds `resumed` (the bytes kept from before, when the download
 * resumed), and while retrying `retrying` (1, 2, ...), `of` (RETRIES), `connected` (whether
 * any byte had arrived) and `host`. `signal` cancels; what arrived so far is kept for the
 * next try. Fails with a DownloadError.
 */
export async function download(url, { signal, progress = () => {} } = {}) {
  const { host, pathname } = new URL(url);
  const file = decodeURIComponent(pathname.split('/').pop());
  let parts = await openParts();
  const kept = await keptParts(url, parts);
  const blobs = kept.blobs;
  let { loaded, total, etag } = kept;
  let type = kept.type || 'application/octet-stream';
  const resumed = loaded;
  const extra = () => (resumed ? { resumed } : {});
  let pending = [];
  let pendingBytes = 0;
  let flushed = Date.now();

  // What arrived since the last write, kept as one more part.
  const flush = async () => {
    if (!pendingBytes) return;
    const blob = new Blob(pending);
    const offset = loaded - pendingBytes;
    blobs.push(blob);
    pending = [];
    pendingBytes = 0;
    flushed = Date.now();
    const headers = { 'content-type': type, 'x-total': String(total), ...(etag ? { 'x-etag': etag } : {}) };
    // A full quota only costs a reload the bytes since the last part that fitted.
    await parts?.put(partKey(url, offset), new Response(blob, { headers })).catch(() => { parts = null; });
  };
  const restart = async () => {
    blobs.length = 0;
    pending = [];
    pendingBytes = 0;
    loaded = 0;
    if (parts) await forgetParts(url, parts);
  };

  if (total && loaded === total) {
    progress(file, loaded, total, extra());
  } else {
    for (let attempt = 0; ; attempt++) {
      try {
        if (globalThis.navigator?.onLine === false) {
          throw new DownloadError(`cannot reach ${host} to download ${file} (this device is offline)`, { code: 'network', host });
        }
        let response;
        try {
          response = await fetch(url, { signal, headers: loaded ? { Range: `bytes=${loaded}-` } : {} });
        } catch (e) {
          if (e.name === 'AbortError') throw e;
          throw new DownloadError(`cannot reach ${host} to download ${file} (${e.message})`, { code: 'network', host });
        }
        const length = Number(response.headers.get('content-length')) || 0;
        const tag = response.headers.get('etag');
        // A range the server could not serve, or a file that changed since its first bytes
        // arrived: start again from byte 0. A server that ignores ranges sends it all anyway.
        const changed = loaded && response.status === 206 && ((total && loaded + length !== total) || (etag && tag && etag !== tag));
        if (loaded && (response.status === 416 || changed)) {
          await response.body?.cancel();
          await restart();
          attempt--;
          continue;
        }
        if (!response.ok) {
          const why = response.status === 404 ? ' (no such file there)' : response.status === 401 || response.status === 403 ? ' (private, gated or refused)' : '';
          throw new DownloadError(`could not download ${url}: HTTP ${response.status}${why}`, { code: 'http', host, status: response.status });
        }
        if (loaded && response.status !== 206) await restart();
        type = response.headers.get('content-type') || type;
        etag = tag || etag;
        total = length ? loaded + length : 0;
        if (resumed && loaded) progress(file, loaded, total, extra());
        const reader = response.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          pending.push(value);
          pendingBytes += value.length;
          loaded += value.length;
          progress(file, loaded, total, extra());
          if (pendingBytes >= FLUSH_BYTES || Date.now() - flushed >= FLUSH_MS) await flush();
        }
        break;
      } catch (e) {
        const cancelled = e.name === 'AbortError';
        const broken = !cancelled && !(e instanceof DownloadError && e.code === 'http');
        if (cancelled || !broken || attempt >= RETRIES || globalThis.navigator?.onLine === false) {
          await flush();
          if (cancelled || e instanceof DownloadError) throw e;
          throw new DownloadError(`the connection to ${host} broke while downloading ${file} (${e.message})`, { code: 'network', host });
        }
        progress(file, loaded, total, { ...extra(), retrying: attempt + 1, of: RETRIES, connected: loaded > 0, host });
        await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
      }
    }
  }
  return new Response(new Blob([...blobs, ...pending]), { headers: { 'content-type': type } });
}
