// Drawing label maps, shared by the page and <word-mask>: one palette (the CLI's overlay
// colours, label 1 = first colour) and one painter.
export const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]];

export const paletteColour = (label) => PALETTE[(label - 1) % PALETTE.length];

/**
 * Blend label colours into `pixels` (an ImageData of the same size as the map). `colours[i]`
 * is label i + 1's colour, or null to leave it unpainted; `outlines` draws white edges.
 */
export function paintMasks(pixels, labelMap, colours, { opacity = 0.6, outlines = false } = {}) {
  const { width, data } = pixels;
  for (let i = 0; i < labelMap.length; i++) {
    const label = labelMap[i];
    if (outlines) {
      const x = i % width;
      const edge = (x + 1 < width && labelMap[i + 1] !== label) || (i + width < labelMap.length && labelMap[i + width] !== label);
      if (edge) { data.set([255, 255, 255], i * 4); continue; }
    }
    const c = label ? colours[label - 1] : null;
    if (!c) continue;
    for (let k = 0; k < 3; k++) data[i * 4 + k] = Math.round(data[i * 4 + k] * (1 - opacity) + c[k] * opacity);
  }
}
