// Types of www/client.js: the one client of the model worker (`wordmask/client`).

/** RGBA pixels, row by row, 4 bytes a pixel. */
export interface Pixels {
  rgba: Uint8Array;
  width: number;
  height: number;
}

/**
 * The segmentation settings, as `wordmask segment`'s flags in camelCase; unset ones take the
 * defaults of the model's engine. (www/settings.js lists them with their choices.)
 */
export interface SegmentOptions {
  engine?: 'auto' | 'dense' | 'groupvit' | 'segclip' | 'fusioner';
  method?: 'vanilla' | 'maskclip' | 'sclip' | 'clearclip' | 'naclip' | 'scclip' | 'resclip';
  templates?: 'imagenet80' | 'imagenet7' | 'single' | 'bare' | 'fusioner';
  shortSide?: number;
  rounding?: 'transformers' | 'mmcv';
  window?: number;
  stride?: number;
  logitScale?: number;
  refine?: 'none' | 'pamr';
  positions?: 'transformers' | 'scale-factor';
  scoring?: 'repository' | 'transformers';
  threshold?: number;
  thresholdOn?: 'merged' | 'renormalised';
  /** Classes winning at most this share of the non-background pixels lose them (SCLIP's area_thd). */
  areaThreshold?: number;
  /** ResCLIP: its first segmentation's probability floor (temp_thd). */
  sfrThreshold?: number;
  /** ResCLIP: "τ, λ" of the intermediate attention, as text ("2, 0.4") or a pair. */
  rcsWeights?: string | [number, number];
  /** ResCLIP: "τ, λ" of the first segmentation's feedback, as text or a pair. */
  sfrWeights?: string | [number, number];
  /** Words of an extra "background" class (';', ',' or '|' between them), or "none". */
  background?: string;
}

/** Segment Anything's automatic mask generator; unset ones take its defaults. */
export interface AutomaticOptions {
  pointsPerSide?: number;
  pointsPerBatch?: number;
  predIouThresh?: number;
  stabilityScoreThresh?: number;
  stabilityScoreOffset?: number;
  boxNmsThresh?: number;
}

/** One object of sharp edges or Name everything. */
export interface WordObject {
  id: number;
  /** The word it is named by, when one fits. */
  label?: string | null;
  /** The word's index among the labels (0-based), when it has one. */
  class?: number | null;
  score: number;
  /** [x0, y0, x1, y1] in image pixels. */
  box: [number, number, number, number];
  area: number;
}

export interface WordCount {
  label: string;
  count: number;
}

export interface Objects {
  objects: WordObject[];
  /** Objects per word, in the labels' order. */
  counts: WordCount[];
  /** The object id of each pixel, 0 = none. */
  instances: Uint16Array;
  encodeMs: number;
  masksMs: number;
}

export interface SegmentResult {
  width: number;
  height: number;
  /** Each label and the share of the image's pixels it got. */
  labels: { label: string; share: number }[];
  unlabelled: number;
  /** Each pixel's label, 1-based in the labels' order, 0 = unlabelled (Uint16Array above 255 labels). */
  labelMap: Uint8Array | Uint16Array;
  /** Each pixel's top score, 0..255. */
  confidence: Uint8Array;
  engine: string;
  method: string;
  /** Milliseconds of each stage. */
  timings: { text: number; image: number; scores: number; finish: number };
}

/**
 * A quick look (`segment(request, { onPreview })`): one pass at a short side of at most 224
 * pixels, without windows, PAMR or sharp edges, before the full settings' result. It has no
 * exports: those are the full result's.
 */
export interface PreviewResult extends SegmentResult {
  preview: true;
  /** The short side it was segmented at, in pixels. */
  shortSide: number;
  /** One pass over the whole image (false for Fusioner, whose crops are its checkpoint's). */
  onePass: boolean;
  /** What the full run adds: its size ('336 px'), 'windows', 'PAMR', 'sharp edges'. */
  refines: string[];
  /** The settings it was segmented with. */
  options: SegmentOptions;
}

export interface EverythingResult extends Objects {
  width: number;
  height: number;
}

/** The export formats, as `wordmask segment --format` names them. */
export type ExportFormat = 'coco' | 'yolo' | 'labelme' | 'voc';

/** A COCO instances file (cocodataset/cocoapi's `COCO` reads it). */
export interface CocoFile {
  images: { id: number; file_name: string; width: number; height: number }[];
  /** One a typed word, ids from 1 in the words' order; `synonyms`: every word typed for it. */
  categories: { id: number; name: string; supercategory: string; synonyms: string[] }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    /** Compressed RLE (column-major, as pycocotools), or polygons `[x0, y0, x1, y1, ...]`. */
    segmentation: { size: [number, number]; counts: string } | number[][];
    area: number;
    /** `[x, y, width, height]`. */
    bbox: [number, number, number, number];
    iscrowd: 0;
    score: number;
  }[];
}

/** A LabelMe file (version 5 format): one polygon shape a part of each object. */
export interface LabelMeFile {
  version: string;
  flags: Record<string, never>;
  shapes: { label: string; points: [number, number][]; group_id: number; description: string; shape_type: 'polygon'; flags: Record<string, never>; mask: null }[];
  imagePath: string;
  imageData: null;
  imageHeight: number;
  imageWidth: number;
}

/** Options of the export methods. */
export interface ExportOptions {
  /** The image's file name, as the files name it (default 'image.png'). */
  fileName?: string;
  /** Its COCO image id (default 1). */
  imageId?: number;
  /** Objects of fewer pixels are left out (default 0: every one). */
  minArea?: number;
}

/**
 * A result's exports, written by the core's writers in the model worker (the files
 * `wordmask segment --images` writes for the image). Objects: sharp edges' or Name
 * everything's when the result has them, else the words' connected regions; a prompt's result
 * is its one object. Not enumerable: the result still clones as plain data.
 */
export interface Exports {
  /** COCO instances, masks as RLE (`polygons`: as polygons). */
  toCOCO(options?: ExportOptions & { polygons?: boolean }): Promise<CocoFile>;
  /** YOLO-seg: the image's label file and `data.yaml` (the class list, `path: "."`). */
  toYOLO(options?: ExportOptions): Promise<{ txt: string; dataYaml: string }>;
  /** LabelMe; `imagePath`: the image as seen from the JSON file (default: the file name). */
  toLabelMe(options?: ExportOptions & { imagePath?: string }): Promise<LabelMeFile>;
  /** Pascal VOC: SegmentationClass and SegmentationObject palette PNGs, and `labelmap.txt`. */
  toVOC(options?: ExportOptions): Promise<{ classPng: Uint8Array; objectPng: Uint8Array; labelmap: string }>;
}

/** One export file: its path in the CLI's folder layout, its format and its bytes. */
export interface ExportFile {
  path: string;
  format: ExportFormat;
  bytes: Uint8Array;
}

/** An object as `exportImage` takes it: its word by index or name, drawn by its id or its own mask. */
export interface ExportObject {
  id?: number;
  class?: number | null;
  label?: string | null;
  score?: number | null;
}

export interface ExportImageRequest {
  request: {
    /** The words as typed: the categories. */
    labels: string;
    formats: ExportFormat[];
    width: number;
    height: number;
    fileName: string;
    imageId?: number;
    imagePath?: string;
    polygons?: boolean;
    minArea?: number;
    /** Absent: the words' connected regions of `labelMap` (with `confidence`). */
    objects?: ExportObject[];
  };
  labelMap?: Uint8Array | Uint16Array;
  confidence?: Uint8Array;
  /** The objects' ids, a pixel each (0: none). */
  instances?: Uint16Array;
  /** Object k's own mask (1 inside), where given. */
  masks?: (Uint8Array | null | undefined)[];
}

/** Point mode: `points` and `box` in image pixels. */
export interface Prompt {
  points?: { x: number; y: number; positive?: boolean }[];
  box?: [number, number, number, number];
}

export interface PromptResult {
  width: number;
  height: number;
  /** 1 inside the object. */
  mask: Uint8Array;
  /** The decoder's own estimate (absent for Open-Vocabulary SAM). */
  iou?: number | null;
  area: number;
  label?: string;
  probability?: number;
  runnerUp?: string;
  timings: { decode: number; name: number };
}

export interface Device {
  backend: 'webgpu' | 'cpu';
  threads: number;
  precision: string;
  /** The module that runs the model: pkg/ ('main') or one of the CPU fallback's. */
  build: 'main' | 'cpu-relaxed' | 'threads' | 'threads-relaxed';
  /** On WebGPU, the adapter as the browser describes it (fields it withholds are empty). */
  adapter: { vendor: string; architecture: string; device: string; description: string; f16: boolean } | null;
  /** On WebGPU, what the device was granted; the core sizes its chunks from it. */
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    shaderF16: boolean;
  } | null;
}

export interface Ready {
  backend: 'webgpu' | 'cpu';
  /** 'words' (CLIP, GroupViT, ...) or 'prompts' (Segment Anything, Open-Vocabulary SAM). */
  role: 'words' | 'prompts';
  engine: string;
  /** The words engine's default settings. */
  defaults?: SegmentOptions;
  /** A prompt model that names its own masks. */
  names?: boolean;
  /** Local files: which were read and which left alone. */
  files?: { used: string[]; ignored: string[] };
  /** The weights file read (`model.q8.safetensors` where int8 weights were asked for and found). */
  weights: string;
}

export interface Progress {
  file: string;
  loaded: number;
  total: number;
  cached?: boolean;
  resumed?: number;
  retrying?: boolean;
  of?: number;
  connected?: boolean;
  host?: string;
}

export interface Stage {
  stage: 'text' | 'image' | 'scores' | 'finish' | 'edges' | 'masks';
  /** A quick look's stage (`segment`'s `onPreview`). */
  preview?: boolean;
  /** 'masks' (Name everything): the grid's prompts decoded so far, of `total`. */
  done?: number;
  total?: number;
}

export interface ClientEvents {
  device: Device;
  progress: Progress;
  stage: Stage;
  ready: Ready;
  restarting: { reason: string };
  /** Reloading the model after a restart failed. */
  error: { message: string; code: ErrorCode };
}

/**
 * What kind of failure a ModelError is (the core's from its `Error::code`):
 * - `model-not-found`: no checkpoint at the URL (a 404 for its config.json or weights), or no
 *   config.json or weights among the local files;
 * - `not-a-checkpoint`: the weights cannot be read (truncated, corrupt, another format);
 * - `wrong-architecture`: config.json names an architecture the core does not read (or is not
 *   one), or the weights do not fit it;
 * - `network`: the host could not be reached, or the connection broke (`host`);
 * - `http`: the host answered with an error (`host`, `status`);
 * - `cancelled`: `cancel()` stopped the download;
 * - `invalid-input`: an argument, label or setting the core refuses, or no model of the kind
 *   loaded yet;
 * - `unsupported`: something this build does not provide;
 * - `no-webgpu`: no GPU adapter could be opened;
 * - `device-lost`: the GPU device was lost (the client starts a fresh worker and reloads);
 * - `crashed`: the worker stopped otherwise (restarted likewise);
 * - `out-of-memory`: memory ran out;
 * - `io`: a file could not be written;
 * - `camera` (`<word-mask camera>` only): the camera could not be opened;
 * - `internal`: anything else (a bug: please report it).
 */
export type ErrorCode =
  | 'model-not-found' | 'not-a-checkpoint' | 'wrong-architecture' | 'network' | 'http' | 'cancelled'
  | 'invalid-input' | 'unsupported' | 'no-webgpu' | 'device-lost' | 'crashed' | 'out-of-memory' | 'io'
  | 'camera' | 'internal';

/** What every request of the client rejects with. */
export class ModelError extends Error {
  constructor(message: string, options?: { code?: ErrorCode; host?: string; status?: number });
  name: 'ModelError';
  code: ErrorCode;
  /** The host a failed download asked. */
  host?: string;
  /** The HTTP status of an `http` (or `model-not-found`) failure. */
  status?: number;
}

/** `segment`'s second argument. */
export interface SegmentProgress {
  /** Called with the quick look before the full result comes. */
  onPreview?: (preview: PreviewResult) => void;
  /**
   * What shows the results (default 'page'): a quick look is skipped where a newer request of
   * its view waits by the time its turn comes.
   */
  view?: string;
}

/** A folder URL for a hub id (`owner/name`) or a URL (absolute or relative to the page). */
export function modelUrl(model: string): string;

export class ModelClient {
  /**
   * `backend`: 'webgpu' (the CPU where WebGPU is missing) or 'cpu'; `threads`: the CPU
   * fallback's threads where the page is cross-origin isolated; `precision` (WebGPU).
   */
  constructor(options?: { backend?: 'webgpu' | 'cpu'; threads?: number; precision?: 'auto' | 'f32' | 'f16' });
  /** Listen to an event; returns the function that stops listening. */
  on<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): () => void;
  /** The compute device: WebGPU, or the CPU backend where WebGPU is missing. */
  openDevice(): Promise<Device>;
  /**
   * A hub id or folder URL, or local files (config.json, the weights, preprocessor_config.json).
   * `q8`: read int8 weights (`model.q8.safetensors`) where the folder has them.
   */
  load(source: string | Iterable<File>, options?: { q8?: boolean }): Promise<Ready>;
  /**
   * `rgba` is transferred to the worker. `onPreview`: a quick look first, where the full
   * settings have something to refine (skipped where the full run is one cheap pass already, or
   * a newer request waits by the time its turn comes); the promise resolves with the full result.
   */
  segment(request: Pixels & { labels: string; options?: SegmentOptions; sharp?: false }, options?: SegmentProgress): Promise<SegmentResult & Exports>;
  segment(request: Pixels & { labels: string; options?: SegmentOptions; sharp: true }, options?: SegmentProgress): Promise<SegmentResult & Objects & Exports>;
  /**
   * One frame of a camera or video: `segment`'s result with the scores averaged over the frames
   * before by `smooth` (0-1, default 0.7), objects keeping their ids, and why a frame started
   * afresh (`reset`: 'first', 'words', 'size', 'cut', or null).
   */
  segmentFrame(request: Pixels & { labels: string; options?: SegmentOptions; smooth?: number; sharp?: boolean }): Promise<SegmentResult & Objects & Exports & { reset: 'first' | 'words' | 'size' | 'cut' | null }>;
  /** The next frame starts a new stream. */
  resetVideo(): Promise<void>;
  everything(request: Pixels & { labels?: string; options?: SegmentOptions; automatic?: AutomaticOptions }): Promise<EverythingResult & Exports>;
  /** Point mode's heavy pass; resolves with its milliseconds. */
  encode(image: Pixels): Promise<number>;
  prompt(request: { image?: Pixels; prompt: Prompt; labels?: string; options?: SegmentOptions; onEncode?: () => void }): Promise<PromptResult>;
  parseLabels(text: string): Promise<{ name: string; synonyms: string[] }[]>;
  /** One image's export files, written by the core (paths in the CLI's layout). */
  exportImage(request: ExportImageRequest): Promise<{ files: ExportFile[] }>;
  /** A folder's `yolo/data.yaml`, `voc/labelmap.txt`, and `coco.json` and `coco_results.json` merged from each image's COCO file (text). */
  exportFolder(request: { labels: string; formats: ExportFormat[]; yoloPath?: string }, cocoParts?: string[]): Promise<{ files: ExportFile[] }>;
  /** The words' connected regions of a segmentation, as objects. */
  wordObjects(request: { labels: string; labelMap: Uint8Array | Uint16Array; confidence: Uint8Array; width: number; height: number }): Promise<EverythingResult>;
  /** Stop the download in progress. */
  cancel(): void;
  /** Whether a model of `role` is loaded. */
  has(role: 'words' | 'prompts'): boolean;
  terminate(): void;
  backend: 'webgpu' | 'cpu';
  threads: number | undefined;
  precision: 'auto' | 'f32' | 'f16';
  /** The words model's engine and its defaults, once loaded. */
  engine: string | null;
  defaults: SegmentOptions | null;
}

/** One worker, device and model for the whole page, shared by every <word-mask>. */
export function sharedClient(): ModelClient;
