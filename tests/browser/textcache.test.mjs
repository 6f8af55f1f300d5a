// Text embeddings outlive the visit: words segmented once with a model are not embedded again
// on the next visit with the same model (IndexedDB), the masks stay the same, a new word is the
// only one embedded, and another model does not get the first one's embeddings.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { SCENE, paintScene, startServer, withBrowser, workerClient } from './harness.mjs';

const MODEL = '/tests/fixtures/semantic-colours';
const OTHER = '/tests/fixtures/semantic-colours-segclip';

let server;
before(async () => { server = await startServer(); });
after(() => server.close());

// One visit: a fresh page and worker, the model loaded, each word list segmented in turn.
// Returns, per list, the label map and how many names the text encoder embedded for it.
async function visit(context, model, lists) {
  const page = await context.newPage();
  try {
    await page.goto(`${server.url}/`);
    await page.evaluate(workerClient);
    await page.evaluate(() => ask({ type: 'init', backend: 'cpu' }));
    const ready = await page.evaluate((m) => ask({ type: 'load', url: m }), model);
    assert.equal(ready.status, 'ready', JSON.stringify(ready));
    await page.evaluate(`window.paintScene = ${paintScene}`);
    const worker = page.workers().at(-1);
    const out = [];
    for (const labels of lists) {
      const before = await worker.evaluate(() => self.wordmaskNamesEmbedded());
      const result = await page.evaluate(async ([labels, scene]) => {
        const r = await ask({ type: 'segment', ...paintScene(scene), labels, options: {} });
        return { status: r.status, message: r.message, labelMap: r.labelMap ? Array.from(r.labelMap) : undefined };
      }, [labels, SCENE]);
      assert.equal(result.status, 'result', result.message);
      out.push({ labelMap: result.labelMap, embedded: (await worker.evaluate(() => self.wordmaskNamesEmbedded())) - before });
    }
    return out;
  } finally {
    await page.close();
  }
}

test('words seen on an earlier visit skip the text encoder', { timeout: 300_000 }, async () => {
  await withBrowser({ webgpu: false }, async (browser) => {
    const context = await browser.newContext();
    const words = SCENE.labels.join(', ');
    const [first] = await visit(context, MODEL, [words]);
    // The scene's words and the engine's "background" word.
    assert.equal(first.embedded, SCENE.labels.length + 1);
    const [again, more] = await visit(context, MODEL, [words, `${words}, purple`]);
    assert.equal(again.embedded, 0, 'every name came from the earlier visit');
    assert.deepEqual(again.labelMap, first.labelMap, 'kept embeddings give the same masks');
    assert.equal(more.embedded, 1, 'only the new word is embedded');
    // Another checkpoint has its own embeddings.
    const [other] = await visit(context, OTHER, [words]);
    assert.ok(other.embedded >= SCENE.labels.length, `another model embedded ${other.embedded} names`);
  });
});
