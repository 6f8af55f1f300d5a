// Label colours for any number of words. The first twelve are the CLI's overlay colours (label 1
// = the first); after them each colour is the one farthest, in CIELAB, from every colour before
// it (greedy farthest-point sampling over a grid of sRGB colours), so that the first 300 stay at
// least 12 ΔE*ab apart where the twelve alone, repeated, made label 13 look like label 1.

export const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]];

/** CIELAB (D65) of an sRGB colour, for distances that follow what the eye tells apart. */
export function lab([r, g, b]) {
  const linear = (v) => { const c = v / 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const [R, G, B] = [linear(r), linear(g), linear(b)];
  const x = (0.4124 * R + 0.3576 * G + 0.1805 * B) / 0.95047;
  const y = 0.2126 * R + 0.7152 * G + 0.0722 * B;
  const z = (0.0193 * R + 0.1192 * G + 0.9505 * B) / 1.08883;
  const f = (t) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 * t + 16) / 116);
  return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
}

// Candidates: sRGB in steps of 17 (16 levels a channel), lightness 20 to 92 so that no mask is
// near black or near the outlines' white.
const STEP = 17;
const LIGHTNESS = [20, 92];

let picker = null;

// The greedy sampler, made on first use past the twelve (about 4,000 candidates).
function makePicker() {
  const rgb = [];
  const labs = [];
  for (let r = 0; r <= 255; r += STEP) {
    for (let g = 0; g <= 255; g += STEP) {
      for (let b = 0; b <= 255; b += STEP) {
        const l = lab([r, g, b]);
        if (l[0] >= LIGHTNESS[0] && l[0] <= LIGHTNESS[1]) { rgb.push([r, g, b]); labs.push(...l); }
      }
    }
  }
  const nearest = new Float64Array(rgb.length).fill(Infinity); // squared distance to the palette
  const add = (l) => {
    for (let i = 0; i < rgb.length; i++) {
      const d = (labs[3 * i] - l[0]) ** 2 + (labs[3 * i + 1] - l[1]) ** 2 + (labs[3 * i + 2] - l[2]) ** 2;
      if (d < nearest[i]) nearest[i] = d;
    }
  };
  const colours = PALETTE.map((c) => c);
  colours.forEach((c) => add(lab(c)));
  return {
    colours,
    // One more colour: the candidate farthest from all so far; null once they are all taken.
    next() {
      let best = -1;
      for (let i = 0; i < rgb.length; i++) if (nearest[i] > 0 && (best < 0 || nearest[i] > nearest[best])) best = i;
      if (best < 0) return null;
      add(labs.slice(3 * best, 3 * best + 3));
      colours.push(rgb[best]);
      return rgb[best];
    },
  };
}

/** Label `label`'s colour (1-based); past the candidates' count the colours repeat. */
export function paletteColour(label) {
  if (label <= PALETTE.length) return PALETTE[label - 1];
  picker ??= makePicker();
  while (picker.colours.length < label && picker.next()) { /* extend */ }
  return picker.colours[(label - 1) % picker.colours.length];
}
