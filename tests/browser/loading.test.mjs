// Loading a model as a person meets it when something goes wrong: the hub cannot be reached (the
// message names the host and offers the next steps, beside the Load button, on a phone too);
// Cancel is no error; a download stopped by a reload resumes from the bytes kept, asking a
// throttled server that counts what it serves for the rest only; and a picked whole folder of
// each kind of checkpoint loads, the page saying which files it used and switching to Point
// mode for a Segment Anything or Open-Vocabulary SAM folder.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { dropSceneAndSegment, startServer, withPage } from './harness.mjs';

const ARTIFACTS = new URL('./artifacts/loading/', import.meta.url).pathname;
const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const PHONE = { width: 390, height: 844 };
const LAPTOP = { width: 1440, height: 900 };

let server;
before(async () => { server = await startServer(); mkdirSync(ARTIFACTS, { recursive: true }); });
after(() => server.close());

const statusText = (page) => page.textContent('#status');
const waitStatus = (page, pattern, timeout = 60_000) => page.waitForFunction(
  (source) => new RegExp(source).test(document.getElementById('status').textContent), pattern.source, { timeout },
);

// Every text the live status shows from now on, with the progress bar's value and maximum.
async function recordStatus(page) {
  await page.evaluate(() => {
    window.statuses = [];
    const note = () => {
      const bar = document.getElementById('progress');
      window.statuses.push({ text: document.getElementById('status').textContent, value: bar.value, max: bar.max });
    };
    new MutationObserver(note).observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
  });
}

async function audit(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => {
    const { violations } = await axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] });
    return violations.map((v) => `${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
}

// A model host on a port of its own (cross-origin, as the hub is) that serves tests/fixtures/
// with HTTP ranges, sends `model.safetensors` slowly (`rate` bytes each 100 ms) and logs each
// request: its path, Range header and the bytes it was sent.
async function throttledHost({ rate = 8192 } = {}) {
  const log = [];
  const host = createServer((req, res) => {
    const cors = { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'range', 'access-control-expose-headers': 'content-length, content-range, etag' };
    if (req.method === 'OPTIONS') { res.writeHead(204, cors).end(); return; }
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = `${FIXTURES}${path.replace(/^\/+/, '')}`;
    let body;
    try { body = readFileSync(file); } catch { res.writeHead(404, cors).end(); return; }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const entry = { path, range: req.headers.range ?? null, sent: 0 };
    log.push(entry);
    const part = body.subarray(start);
    res.writeHead(range ? 206 : 200, {
      ...cors, 'content-type': 'application/octet-stream', 'content-length': part.length, etag: `"${statSync(file).mtimeMs}-${body.length}"`,
      ...(range ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
    });
    if (!path.endsWith('model.safetensors')) { entry.sent = part.length; res.end(part); return; }
    let at = 0;
    const timer = setInterval(() => {
      const chunk = part.subarray(at, at + rate);
      at += chunk.length;
      entry.sent = at;
      if (at >= part.length) { clearInterval(timer); res.end(chunk); } else res.write(chunk);
    }, 100);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise((done) => host.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${host.address().port}`, log, close: () => { host.closeAllConnections(); host.close(); } };
}

for (const [size, viewport] of [['phone', PHONE], ['laptop', LAPTOP]]) {
  test(`${size}: with the hub unreachable, the failure names the host and offers the next steps beside Load`, { timeout: 120_000 }, async () => {
    const failHub = (page) => page.context().route('https://huggingface.co/**', (route) => route.abort('internetdisconnected'));
    await withPage(server.url, { webgpu: false, context: { viewport }, before: failHub }, async (page) => {
      await waitStatus(page, /Load a model/);
      await recordStatus(page);
      await page.click('#load');
      await page.waitForSelector('#load-problem:not([hidden])', { timeout: 60_000 });
      const problem = await page.textContent('#load-problem');
      assert.match(problem, /cannot reach huggingface\.co to download config\.json/i);
      assert.match(problem, /try again/i);
      assert.match(problem, /files on this device/);
      assert.match(problem, /URL of a folder/);
      assert.deepEqual(await page.$$eval('#load-problem button', (bs) => bs.map((b) => b.textContent)), ['Try again', 'Choose local files', 'Use a folder URL']);
      assert.match(await statusText(page), /^Error: cannot reach huggingface\.co/);
      // While it retried it said it could not reach the host, not that a connection was lost.
      const retries = (await page.evaluate(() => window.statuses)).map((s) => s.text).filter((t) => /trying again/.test(t));
      assert.ok(retries.length > 0, 'the retries were shown');
      for (const t of retries) assert.match(t, /^Cannot reach huggingface\.co; trying again \(\d of 3\)/);

      // Seen where the visitor pressed Load: inside the viewport, just under the button.
      const [button, box] = await page.evaluate(() => ['load', 'load-problem'].map((id) => {
        const r = document.getElementById(id).getBoundingClientRect();
        return { top: r.top, bottom: r.bottom };
      }));
      assert.ok(box.top >= 0 && box.bottom <= viewport.height, `the message lies at ${box.top}..${box.bottom} of ${viewport.height}`);
      assert.ok(box.top - button.bottom < 60, `the message starts ${box.top - button.bottom} px under the button`);
      await page.screenshot({ path: `${ARTIFACTS}${size}-offline.png` });
      assert.deepEqual(await audit(page), [], 'the failure state');

      // "Use a folder URL" shows the URL field with its label, focused.
      await page.click('#load-problem button[data-action="url"]');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'model-url');
      assert.ok(await page.isVisible('#model-url-label'));
      // Back on a hub checkpoint the field and its label go together.
      await page.selectOption('#model-pick', 'openai/clip-vit-base-patch32');
      assert.deepEqual([await page.isVisible('#model-url'), await page.isVisible('#model-url-label')], [false, false]);
      // "Try again" loads again (and fails again, naming the host).
      await page.selectOption('#model-pick', 'openai/clip-vit-base-patch16');
      await page.click('#load-problem button[data-action="retry"]');
      await waitStatus(page, /Loading|trying again/);
      await page.waitForSelector('#load-problem:not([hidden])', { timeout: 60_000 });
      assert.match(await page.textContent('#load-problem'), /huggingface\.co/);
    });
  });
}

test('Cancel is not an error, and Load then resumes the download', { timeout: 120_000 }, async () => {
  const host = await throttledHost();
  try {
    await withPage(server.url, { webgpu: false, path: `/?model=${host.url}/semantic-colours/` }, async (page) => {
      await waitStatus(page, /Load a model/);
      await page.click('#load');
      await waitStatus(page, /Downloading model\.safetensors: 0\.[1-9]/);
      await page.click('#cancel');
      await waitStatus(page, /cancelled/);
      const said = await statusText(page);
      assert.doesNotMatch(said, /Error/);
      assert.match(said, /resumes/);
      assert.equal(await page.isVisible('#load-problem'), false, 'no error box');
      assert.equal(await page.isVisible('#cancel'), false);
      await page.screenshot({ path: `${ARTIFACTS}cancelled.png` });

      await page.click('#load');
      await waitStatus(page, /Model ready/);
      const weights = host.log.filter((r) => r.path.endsWith('model.safetensors'));
      assert.equal(weights.length, 2, JSON.stringify(weights));
      assert.match(weights[1].range ?? '', /^bytes=[1-9]\d*-$/, 'the second download asked for the rest only');
    });
  } finally {
    host.close();
  }
});

test('a download stopped by a reload resumes from the bytes kept, and the model it makes is whole', { timeout: 300_000 }, async () => {
  const host = await throttledHost();
  const total = statSync(`${FIXTURES}semantic-colours/model.safetensors`).size;
  try {
    await withPage(server.url, { webgpu: false, path: `/?model=${host.url}/semantic-colours/` }, async (page) => {
      await waitStatus(page, /Load a model/);
      await page.click('#load');
      const first = await (async () => {
        for (;;) {
          const entry = host.log.find((r) => r.path.endsWith('model.safetensors'));
          if (entry && entry.sent >= total * 0.6) return entry;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      await page.reload();
      const servedBeforeReload = first.sent;
      assert.ok(servedBeforeReload < total, 'the reload came in the middle of the weights');

      await waitStatus(page, /Load a model/);
      await recordStatus(page);
      await page.click('#load');
      await waitStatus(page, /Model ready/);
      const weights = host.log.filter((r) => r.path.endsWith('model.safetensors'));
      assert.equal(weights.length, 2, JSON.stringify(weights));
      const from = Number(/^bytes=(\d+)-$/.exec(weights[1].range ?? '')?.[1]);
      assert.ok(from > 0 && from <= servedBeforeReload, `resumed at byte ${from} (${servedBeforeReload} had been sent)`);
      assert.equal(weights[1].sent, total - from, 'the second download fetched the remainder only');
      assert.ok(weights[1].sent < total);

      // The progress showed the resumed part: the bar starts at the bytes kept, and says so.
      const statuses = await page.evaluate(() => window.statuses);
      const resumed = statuses.find((s) => /Downloading model\.safetensors/.test(s.text));
      assert.match(resumed.text, /resumed at \d\.\d MB kept from before/);
      assert.ok(resumed.value >= from && resumed.max === total, `the bar at ${resumed.value} of ${resumed.max}`);

      // The kept parts are gone once the whole file is kept, and the spliced file is the model.
      const parts = await page.evaluate(async () => (await (await caches.open('wordmask-partial-v1')).keys()).length);
      assert.equal(parts, 0);
      await dropSceneAndSegment(page);
      assert.match(await page.textContent('#legend'), /red 18\.\d %/);
    });
  } finally {
    host.close();
  }
});

// A whole folder of each kind, picked as a person picks every file in it (the distracting files
// first), and what the page must then say it used and left out.
const FOLDERS = [
  { kind: 'CLIP (dense)', folder: 'semantic-colours', first: 'pytorch_model.bin', used: 'config.json and model.safetensors', out: 'pytorch_model.bin' },
  { kind: 'GroupViT', folder: 'semantic-colours-groupvit', used: 'config.json, model.safetensors and preprocessor_config.json' },
  { kind: 'SegCLIP', folder: 'semantic-colours-segclip', used: 'config.json and model.safetensors' },
  { kind: 'Fusioner', folder: 'semantic-colours-fusioner', first: 'train_state.json', used: 'config.json and model.safetensors', out: 'train_state.json' },
  { kind: 'Segment Anything', folder: 'sam-colours', first: 'README.md', used: 'config.json, model.safetensors and preprocessor_config.json', out: 'README.md', point: true },
  { kind: 'Open-Vocabulary SAM', folder: 'ovsam-tiny', first: 'image.png', used: 'config.json and model.safetensors', out: 'image.png, reference.json, reference.safetensors and resized.png', point: true },
];

test('a whole folder of each kind of checkpoint loads from local files, saying which files it used', { timeout: 300_000 }, async () => {
  await withPage(server.url, { webgpu: false, context: { viewport: PHONE } }, async (page) => {
    await waitStatus(page, /Load a model/);
    for (const { kind, folder, first, used, out, point } of FOLDERS) {
      const names = readdirSync(`${FIXTURES}${folder}`).filter((n) => statSync(`${FIXTURES}${folder}/${n}`).isFile());
      const ordered = [...names.filter((n) => n === first), ...names.filter((n) => n !== first)];
      await page.setInputFiles('#model-files', ordered.map((n) => `${FIXTURES}${folder}/${n}`));
      await page.evaluate(() => { document.getElementById('status').textContent = ''; });
      await page.click('#load');
      await waitStatus(page, /ready|Error/);
      assert.match(await statusText(page), /ready/, `${kind}: ${await statusText(page)}`);
      const note = await page.textContent('#load-note');
      assert.ok(note.startsWith(`Loaded from ${used}`), `${kind}: ${note}`);
      if (out) assert.ok(note.includes(`; left out ${out}.`), `${kind}: ${note}`);
      if (point) {
        // The page serves the model it loaded: Point mode, its picker naming these files.
        assert.equal(await page.getAttribute('#tab-point', 'aria-selected'), 'true', `${kind}: the Point tab is selected`);
        assert.ok(await page.isVisible('#point-panel'));
        assert.match(await page.$eval('#sam-pick', (s) => s.selectedOptions[0].textContent), /^config\.json, model\.safetensors.*\(local files\)$/);
        assert.match(note, /Point mode now/, 'said beside the button, where the visitor is');
        await page.screenshot({ path: `${ARTIFACTS}files-${folder}.png` });
      }
    }
    // Open-Vocabulary SAM (loaded last) outlines and names a clicked object.
    await page.evaluate(async () => {
      const file = new File([await (await fetch('/tests/fixtures/ovsam-tiny/resized.png')).blob()], 'resized.png', { type: 'image/png' });
      const data = new DataTransfer();
      data.items.add(file);
      document.getElementById('view').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    });
    const spec = JSON.parse(readFileSync(`${FIXTURES}ovsam-tiny/reference.json`));
    await page.fill('#labels', spec.typed_labels.join(', '));
    await page.waitForFunction(() => document.getElementById('view').width === 512);
    const view = page.locator('#view');
    await view.scrollIntoViewIfNeeded();
    const box = await view.boundingBox();
    const [x, y] = spec.cases.click.points[0];
    await view.click({ position: { x: box.width * ((x + 0.5) / 512), y: box.height * ((y + 0.5) / 384) } });
    await waitStatus(page, /Outlined|Error/, 120_000);
    assert.ok((await statusText(page)).includes(`Outlined ${spec.cases.click.typed_top1.label}`), await statusText(page));
    await page.screenshot({ path: `${ARTIFACTS}files-ovsam-point.png`, fullPage: true });
    assert.deepEqual(await audit(page), [], 'after loading local files');
  });
});

test('files that are not a checkpoint get an error that says what to pick', { timeout: 120_000 }, async () => {
  await withPage(server.url, { webgpu: false }, async (page) => {
    await waitStatus(page, /Load a model/);
    const choose = async (files) => {
      await page.setInputFiles('#model-files', files.map((n) => `${FIXTURES}${n}`));
      await page.click('#load');
      await waitStatus(page, /ready|Error/);
      return statusText(page);
    };
    assert.match(await choose(['ovsam-tiny/image.png', 'ovsam-tiny/model.safetensors']), /Error: no config\.json among the chosen files \("image\.png", "model\.safetensors"\)/);
    assert.match(await choose(['sam-tiny/config.json', 'sam-tiny/reference.safetensors', 'segclip/segclip-release.bin']),
      /Error: more than one file could be the weights \("reference\.safetensors", "segclip-release\.bin"\)/);
    assert.match(await choose(['ovsam-tiny/config.json', 'ovsam-tiny/image.png']), /Error: no weights among the chosen files/);
    assert.ok(await page.isVisible('#load-problem'), 'shown beside the Load button too');
  });
});
