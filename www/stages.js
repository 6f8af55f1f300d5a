// Which stage of a segmentation the core is in while it runs, for the page's status (a first
// segmentation spends most of its time embedding new words, once per prompt template).
//
// The core times its stages with one stopwatch (src/clock.rs, laps in src/segment/mod.rs's
// `segment`): it reads `performance.now()` from this worker's global scope as it starts and as
// each stage ends, in the order of its `timings` (text, image, scores, finish). Counting those
// reads tells which stage has begun. Where the core runs on another thread (the threads module
// runs it on a pool worker) no read is seen here and no stage is reported.

/** The stages, in the order the core runs them (and names them in `timings`). */
export const STAGES = ['text', 'image', 'scores', 'finish'];

/**
 * With sharp edges one more stage follows the label map (src/segment/refine.rs's `sharpen`):
 * Segment Anything encodes the image and redraws each region; it begins at the read that ends
 * the label map.
 */
export const SHARP_STAGES = [...STAGES, 'edges'];

/**
 * Run `call` (one segmentation by the core), calling `onStage(name)` as each of `stages`
 * begins; the worker's own `performance` is back in place however `call` ends.
 */
export async function watchStages(call, onStage, stages = STAGES) {
  const real = self.performance;
  let reads = 0;
  const now = () => {
    if (reads < stages.length) onStage(stages[reads]);
    reads++;
    return real.now();
  };
  // `performance` is replaceable on a worker's global scope; every other member still answers
  // from the real one.
  self.performance = new Proxy(real, {
    get: (target, key) => (key === 'now' ? now : typeof target[key] === 'function' ? target[key].bind(target) : target[key]),
  });
  try {
    return await call();
  } finally {
    self.performance = real;
  }
}
