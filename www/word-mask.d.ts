// Types of www/word-mask.js: the <word-mask> element (`wordmask/word-mask`).
import type { AutomaticOptions, ErrorCode, Exports, Objects, Prompt, Ready, SegmentOptions, Progress } from './client.js';

export type { AutomaticOptions, CocoFile, ErrorCode, ExportOptions, Exports, LabelMeFile, Objects, Prompt, SegmentOptions } from './client.js';

/**
 * `result` after `segment()` (and on its own when `src` and `labels` are set). Every result has
 * `toCOCO()`, `toYOLO()`, `toLabelMe()` and `toVOC()` (Exports): the files `wordmask segment
 * --images` writes for the image, with the words the result was segmented with.
 */
export interface WordMaskSegmentResult extends Partial<Objects>, Exports {
  width: number;
  height: number;
  /** The labels, in the typed order (label n is value n in `labelMap`). */
  labels: string[];
  /** Each label and its share of the pixels. */
  shares: { label: string; share: number }[];
  /** Each pixel's label, 1-based, 0 = unlabelled (Uint16Array above 255 labels). */
  labelMap: Uint8Array | Uint16Array;
}

/** `result` for each frame of `segmentVideo()`: the frame's segmentation, with its objects' ids kept from frame to frame. */
export interface WordMaskFrameResult extends WordMaskSegmentResult {
  /** The frame's index in the video, from 0. */
  frame: number;
  /** The frame's time in the video, in seconds. */
  time: number;
}

/** What `segmentVideo()` resolves with. */
export interface WordMaskVideoRun {
  /** The frames segmented. */
  frames: number;
  /** Frames that went by too fast to be segmented and could not be gone back to (0 as a rule). */
  skipped: number;
}

/** `result` after a prompt (a click on the canvas in Point mode, or `prompt()`); its exports hold its one object when a word names it. */
export interface WordMaskPromptResult extends Exports {
  width: number;
  height: number;
  /** 1 inside the object. */
  mask: Uint8Array;
  label: string | null;
  probability: number | null;
  iou?: number | null;
  area: number;
}

/** `result` after `everything()`; its exports hold the objects named among the labels. */
export interface WordMaskEverythingResult extends Exports {
  width: number;
  height: number;
  objects: Objects['objects'];
  counts: Objects['counts'];
  instances: Uint16Array;
}

export type WordMaskResult = WordMaskSegmentResult | WordMaskFrameResult | WordMaskPromptResult | WordMaskEverythingResult;

/**
 * `preview`: a still image's quick look (one pass at a short side of at most 224 pixels, no
 * windows, PAMR or sharp edges), drawn before the full settings' `result` replaces it. It has
 * no exports: those are the result's.
 */
export interface WordMaskPreview extends Omit<WordMaskSegmentResult, keyof Exports | keyof Objects> {
  preview: true;
  /** The short side it was segmented at, in pixels. */
  shortSide: number;
  /** What the full run adds: its size ('336 px'), 'windows', 'PAMR', 'sharp edges'. */
  refines: string[];
}

export interface WordMaskEventMap {
  /** A model file's download, as it goes. */
  progress: CustomEvent<Progress>;
  ready: CustomEvent<Pick<Ready, 'backend' | 'engine' | 'defaults'>>;
  /** A still image's quick look, before its `result` (unless `progressive="off"`). */
  preview: CustomEvent<WordMaskPreview>;
  result: CustomEvent<WordMaskResult>;
  /** What failed and what to check, and what kind of failure it was (`code`). */
  error: CustomEvent<{ message: string; code: ErrorCode }>;
}

export type WordMaskImage = ImageBitmap | HTMLImageElement | HTMLVideoElement | HTMLCanvasElement | OffscreenCanvas | VideoFrame;

/**
 * `<word-mask model="openai/clip-vit-base-patch16" labels="person, dog|puppy, grass" src="photo.jpg">`.
 * Attributes: `model`, `labels`, `src`, `camera` (a facing mode or empty), `sam`, `interactive`,
 * `q8` (read int8 weights, `model.q8.safetensors`, where the model's folder has them), `smooth`
 * (the camera's: each frame's scores averaged with the frames before, 0 to 1, default 0.7),
 * `progressive` (a still image's quick look first, fired as `preview`; on unless "off"),
 * and one per segmentation setting (`engine`, `method`, `templates`, `short-side`, `rounding`,
 * `window`, `stride`, `logit-scale`, `refine`, `positions`, `scoring`, `threshold`,
 * `threshold-on`, `area-threshold`, `sfr-threshold`, `rcs-weights`, `sfr-weights`, `background`). CSS parts: `canvas`, `legend`, `status`.
 */
export class WordMask extends HTMLElement {
  /** The labels, commas between them (`a|b` for synonyms); set a string or an array. */
  get labels(): string;
  set labels(value: string | string[]);
  /** Whether a still image gets a quick look first: unless the `progressive` attribute is "off" (or "false"). */
  readonly progressive: boolean;
  /**
   * Segment an image with the current labels; fires and resolves with `result`. `frame`: one
   * frame of a stream, its scores averaged with the frames before by `smooth` (0 to 1, default
   * the `smooth` attribute, else 0.7) and its objects keeping their ids (no quick look).
   * `progressive` (default: the attribute's): a quick look first, fired as `preview`.
   */
  segment(source: WordMaskImage, options?: { sharp?: boolean; frame?: boolean; smooth?: number; progressive?: boolean }): Promise<WordMaskSegmentResult>;
  /**
   * Every frame of a video (a `<video>` element, or a video file, Blob or URL), from its start
   * and in order, none dropped: each segmented as a frame of a stream (`smooth`, default the
   * `smooth` attribute), drawn and fired as `result` with its `frame` index and `time`;
   * `onFrame` is awaited with each. `signal` stops after the frame in hand. A file the browser
   * cannot decode rejects (code `invalid-input`) saying how to convert it.
   */
  segmentVideo(
    source: HTMLVideoElement | Blob | string,
    options?: { smooth?: number; onFrame?: (result: WordMaskFrameResult) => unknown; signal?: AbortSignal },
  ): Promise<WordMaskVideoRun>;
  /** Point mode (`sam`): outline the object a prompt points at, in image pixels. */
  prompt(prompt: Prompt): Promise<WordMaskPromptResult>;
  /** Name everything (`sam`): every object of the image (default: the element's own). */
  everything(source?: WordMaskImage, options?: { automatic?: AutomaticOptions }): Promise<WordMaskEverythingResult>;
  addEventListener<K extends keyof WordMaskEventMap>(type: K, listener: (this: WordMask, event: WordMaskEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WordMaskEventMap>(type: K, listener: (this: WordMask, event: WordMaskEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    'word-mask': WordMask;
  }
}
