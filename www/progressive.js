// Progressive results: a quick look at an image before its full settings' result. The quick look
// is one pass over the whole image (no sliding windows) at a short side of at most
// PREVIEW_SIDE pixels, never more than the full run's, without refinement (no PAMR, no sharp
// edges); the full run follows and replaces it. Its words' text embeddings are the full run's
// too (the core keeps them), so the quick look costs one small image pass.
//
// Only settings the loaded engine reads are set (the core refuses a setting that another engine
// reads): `shortSide` (every words engine), `window` (dense CLIP, GroupViT, SegCLIP; Fusioner's
// crops are its checkpoint's and keep their stride) and `refine` (dense CLIP). Sharp edges are
// the request's own switch.

/**
 * The quick look's largest short side: the pretraining size of the CLIP, GroupViT and SegCLIP
 * checkpoints, where one pass sees the image as they were trained to.
 */
export const PREVIEW_SIDE = 224;

/**
 * A quick look pays off where the full run's image passes cost at least this many times its
 * own (pixels through the encoder): closer, it would come at over half the full run's time and
 * delay the full result by as much again.
 */
export const WORTH = 2;

// Windows along a side of `size` pixels, `window` wide, every `stride` (src/segment/slide.rs's
// `grid_count`, mmsegmentation's slide inference).
const gridCount = (size, window, stride) => Math.floor(Math.max(0, size + stride - window - 1) / Math.max(1, stride)) + 1;

/**
 * The quick look for a segmentation of a `width` x `height` image with `options` (the request's
 * settings; unset ones are the engine's `defaults`, as the client holds them) and `sharp`, or
 * null where there is nothing to refine (the full run is one pass at no larger a size, without
 * PAMR or sharp edges) or the full run costs under WORTH times the quick look.
 * Gives `{options, shortSide, onePass, refines}`: the quick look's settings, its short side in
 * pixels, whether it is one pass (Fusioner's crops are its checkpoint's), and what the full run
 * adds (e.g. ['336 px', 'windows', 'PAMR', 'sharp edges']).
 */
export function previewPlan({ defaults, options = {}, width, height, sharp = false }) {
  if (!defaults || !('shortSide' in defaults) || !(width > 0 && height > 0)) return null;
  const chosen = { ...defaults, ...options };
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const asked = Number(chosen.shortSide);
  // 0: the image's own size (Fusioner's default).
  const fullSide = asked > 0 ? asked : short;
  const side = Math.min(PREVIEW_SIDE, fullSide);
  const cost = (s, window, stride) => {
    const [h, w] = [s, Math.floor((s * long) / short)];
    if (!(window > 0)) return h * w;
    return gridCount(h, window, stride) * gridCount(w, window, stride) * Math.min(window, h) * Math.min(window, w);
  };
  const onePass = 'window' in defaults;
  const window = onePass ? Number(chosen.window) : 0;
  const stride = Number(chosen.stride) || window;
  const windows = window > 0 && cost(fullSide, window, stride) > cost(fullSide, 0);
  const pamr = 'refine' in defaults && chosen.refine != null && chosen.refine !== 'none';
  const refines = [
    ...(side < fullSide ? [`${fullSide} px`] : []),
    ...(windows ? ['windows'] : []),
    ...(pamr ? ['PAMR'] : []),
    ...(sharp ? ['sharp edges'] : []),
  ];
  const worth = pamr || sharp || cost(fullSide, window, stride) >= WORTH * cost(side, 0);
  if (!refines.length || !worth) return null;
  const quick = { ...options, shortSide: asked === 0 && side === short ? 0 : side };
  if (onePass) quick.window = 0;
  if ('refine' in defaults) quick.refine = 'none';
  return { options: quick, shortSide: side, onePass, refines };
}

/** What a quick look was: "one pass at 224 px". */
export const quickLookSize = ({ shortSide, onePass }) => `${onePass ? 'one pass ' : ''}at ${shortSide} px`;

/** The status line's words for a quick look: "Quick look (one pass at 224 px) — refining: 336 px, windows". */
export const quickLookText = (quick) => `Quick look (${quickLookSize(quick)}) — refining: ${quick.refines.join(', ')}`;
