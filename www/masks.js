// Drawing label maps, shared by the page and <word-mask>: one palette (palette.js: the CLI's
// overlay colours first, label 1 = first colour, then colours that stay apart for hundreds of
// words) and one painter.
export { PALETTE, paletteColour } from './palette.js';

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

/**
 * The label map as a PNG for eyes: each pixel in its label's colour (`colours[i]`: label
 * i + 1's), unlabelled pixels transparent. Resolves to a Blob.
 */
export function colourPng(labelMap, colours, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  const pixels = ctx.createImageData(width, height);
  for (let i = 0; i < labelMap.length; i++) {
    const c = labelMap[i] ? colours[labelMap[i] - 1] : null;
    if (c) pixels.data.set([...c, 255], i * 4);
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas.convertToBlob({ type: 'image/png' });
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A greyscale PNG of `values` (one per pixel, row-major), as the CLI writes label maps: 8-bit
 * when every value fits in a byte, 16-bit otherwise (or always, with `depth: 16`, as the CLI
 * writes object ids). Resolves to a Blob.
 */
export async function greyPng(values, width, height, { depth } = {}) {
  let top = 0;
  for (const v of values) if (v > top) top = v;
  const bytesPerPixel = top > 255 || depth === 16 ? 2 : 1;
  const raw = new Uint8Array(height * (1 + width * bytesPerPixel));
  for (let y = 0, o = 0; y < height; y++) {
    raw[o++] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const v = values[y * width + x];
      if (bytesPerPixel === 2) raw[o++] = v >> 8;
      raw[o++] = v & 0xff;
    }
  }
  const zlib = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer());
  const chunk = (type, data) => {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    out.set([...type].map((ch) => ch.charCodeAt(0)), 4);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([bytesPerPixel * 8, 0, 0, 0, 0], 8); // bit depth, greyscale, deflate, no filter, no interlace
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk('IHDR', header), chunk('IDAT', zlib), chunk('IEND', new Uint8Array())], { type: 'image/png' });
}
