// A segmentation that left (nearly) every pixel unlabelled, explained with the one change that
// fixes it. A pixel stays unlabelled when its best class scores under the threshold (many
// words, or words that mean nearly the same, split the probability between them) or when the
// best class is the background word (src/segment/result.rs, `Segmentation::new`).

/** Results whose unlabelled share is at least this count as all unlabelled. */
export const ALL_UNLABELLED = 0.99;

/**
 * Why `result` ({labels, unlabelled, confidence: each pixel's best score × 255}) labelled no
 * pixel, with `threshold` and `background` (the background words, or "none") as used: `{why,
 * fix: {setting, value, text}}`, `{why}` with no fix known, or null when pixels got words.
 */
export function explainUnlabelled(result, { threshold, background }) {
  if (!result?.labels.length || result.unlabelled < ALL_UNLABELLED) return null;
  const { confidence } = result;
  const counts = new Uint32Array(256);
  for (const c of confidence) counts[c]++;
  // The best score of the pixel at quantile q (scores quantised to 1/255, as the core sends them).
  const quantile = (q) => {
    let seen = 0;
    for (let v = 0; v < 256; v++) if ((seen += counts[v]) >= q * confidence.length) return v;
    return 255;
  };
  let under = 0;
  for (let v = 0; v < 256 && v / 255 < threshold; v++) under += counts[v];
  const backgroundOn = Boolean(background.trim()) && background.trim() !== 'none';
  if (threshold > 0 && under >= confidence.length / 2) {
    // A threshold under the median pixel's best score (less half a quantisation step): at
    // least half the pixels get their best word.
    const median = quantile(0.5);
    const value = Math.max(0, Math.floor(((median - 0.5) / 255) * 100) / 100);
    return {
      why: `Every pixel stayed unlabelled: the best word's probability is about ${(median / 255).toFixed(2)} in most of the image, under the threshold of ${threshold.toFixed(2)}. `
        + 'Many words, or words that mean nearly the same, split the probability between them.',
      fix: { setting: 'threshold', value, text: value ? `Lower the threshold to ${value.toFixed(2)} and segment again` : 'Set the threshold to 0 (each pixel takes its best word) and segment again' },
    };
  }
  if (backgroundOn) {
    return {
      why: `Every pixel stayed unlabelled: the background word (${background.trim()}) scored above every typed word.`,
      fix: { setting: 'background', value: 'none', text: 'Turn the background word off and segment again' },
    };
  }
  return { why: 'Every pixel stayed unlabelled: no typed word scored above the others anywhere. Try other words.' };
}

/** `help` (from explainUnlabelled, or null) in `box`; its fix button calls `apply(fix)`. */
export function showUnlabelled(box, help, apply) {
  if (!help) { box.replaceChildren(); return; }
  const why = Object.assign(document.createElement('p'), { textContent: help.why });
  const parts = [why];
  if (help.fix) {
    const button = Object.assign(document.createElement('button'), { textContent: help.fix.text });
    button.onclick = () => apply(help.fix);
    parts.push(button);
  }
  box.replaceChildren(...parts);
}
