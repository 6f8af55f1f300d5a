// Folder mode: a whole folder of images labelled with the typed words, as `wordmask segment
// --images DIR --format ...` does on the command line. A folder is picked (`<input
// webkitdirectory>`) or dropped; its PNG and JPEG files (not its subfolders', as the CLI) are
// sorted by name (Unicode code points: the CLI's byte order), each image's COCO id its place in
// that list. The model segments each in turn (sharp edges when they are on), a thumbnail strip
// moves between them, and the one shown can be fixed: an object (pressed in the objects list)
// given another word or removed, and Point mode's outlined objects added. One download: a zip in
// the CLI's layout, written by the core's writers (exports.js), with one merged COCO file.
// Results are kept in IndexedDB: picking the same folder again after a reload brings back what
// was labelled and fixed.
import { zipSync } from './vendor/fflate.js';
import { exportRequest } from './exports.js';
import { openStore } from './idb.js';

/** File names the folder mode reads, by extension (the CLI's `IMAGE_EXTENSIONS`). */
export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg'];

/** Code-point order (UTF-8's byte order, as the CLI sorts the names). */
export function byName(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** A name without its last extension (Rust's `file_stem`: ".png" stays ".png"). */
export function stemOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}

/**
 * The images of a picked folder: `files` are `File`s whose `path` is relative to the folder's
 * parent (`photos/a.png`, `photos/sub/b.png`; a picked folder's `webkitRelativePath`). Gives
 * `{folder, images: [{file, name, stem, id}], left: {subfolders, others}}`, or throws when two
 * images share a stem (their label files would be one file).
 */
export function listImages(files) {
  const entries = files.map(({ file, path }) => ({ file, parts: path.split('/') }));
  const folder = entries[0]?.parts[0] ?? 'images';
  const left = { subfolders: 0, others: 0 };
  const images = [];
  for (const { file, parts } of entries) {
    if (parts.length !== 2) { left.subfolders += 1; continue; }
    const name = parts[1];
    const extension = name.includes('.') ? name.split('.').pop().toLowerCase() : '';
    if (!IMAGE_EXTENSIONS.includes(extension)) { left.others += 1; continue; }
    images.push({ file, name, stem: stemOf(name) });
  }
  images.sort((a, b) => byName(a.name, b.name));
  images.forEach((image, k) => { image.id = k + 1; });
  const stems = new Map();
  for (const image of images) {
    const other = stems.get(image.stem);
    if (other) throw new Error(`${other} and ${image.name} share the name ${image.stem}, and so would their label files; rename one`);
    stems.set(image.stem, image.name);
  }
  return { folder, images, left };
}

// Reading a dropped folder (the File and Directory Entries API): its files with their paths.
async function entriesOf(directory) {
  const reader = directory.createReader();
  const all = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) return all;
    all.push(...batch);
  }
}

/** The files of a dropped folder (its own, and one entry per subfolder's file left out). */
export async function droppedFiles(directory) {
  const out = [];
  for (const entry of await entriesOf(directory)) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: `${directory.name}/${entry.name}` });
    } else {
      out.push({ file: null, path: `${directory.name}/${entry.name}/…` }); // counted as left out
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixing one image's result: its objects (`{id, class, label, score, box, area}`) are drawn by
// their ids in `instances`, and each edit keeps the words' label map in step, so the label PNG
// and the object list agree.

/** Areas, boxes, counts and the words' shares recomputed after an edit (objects left empty go). */
export function recount(result) {
  const { width, height, instances, labelMap } = result;
  const names = result.labels.map((l) => l.label);
  const boxes = new Map(result.objects.map((o) => [o.id, { area: 0, box: [width, height, -1, -1] }]));
  for (let i = 0; i < instances.length; i++) {
    const b = boxes.get(instances[i]);
    if (!b) continue;
    const x = i % width;
    const y = (i - x) / width;
    b.area += 1;
    b.box = [Math.min(b.box[0], x), Math.min(b.box[1], y), Math.max(b.box[2], x), Math.max(b.box[3], y)];
  }
  result.objects = result.objects
    .map((o) => ({ ...o, area: boxes.get(o.id).area, box: boxes.get(o.id).box }))
    .filter((o) => o.area > 0);
  result.counts = names.map((label, k) => ({ label, count: result.objects.filter((o) => o.class === k).length }));
  const pixels = new Array(names.length + 1).fill(0);
  for (let i = 0; i < labelMap.length; i++) pixels[labelMap[i]] += 1;
  result.labels = names.map((label, k) => ({ label, share: pixels[k + 1] / labelMap.length }));
  result.unlabelled = pixels[0] / labelMap.length;
  return result;
}

/** Object `id` takes word `k` (0-based among the result's words), its pixels too. */
export function reassign(result, id, k) {
  const object = result.objects.find((o) => o.id === id);
  if (!object) return result;
  object.class = k;
  object.label = result.labels[k].label;
  for (let i = 0; i < result.instances.length; i++) if (result.instances[i] === id) result.labelMap[i] = k + 1;
  return recount(result);
}

/** Object `id` gone, its pixels unlabelled. */
export function removeObject(result, id) {
  for (let i = 0; i < result.instances.length; i++) {
    if (result.instances[i] === id) { result.instances[i] = 0; result.labelMap[i] = 0; }
  }
  result.objects = result.objects.filter((o) => o.id !== id);
  return recount(result);
}

/**
 * An object of Point mode (`{mask, label, score}`, mask 1 inside) added on top: it takes its
 * pixels from the objects under it, and, when its word is one of the result's, their label.
 */
export function addObject(result, { mask, label, score }) {
  const id = result.objects.reduce((m, o) => Math.max(m, o.id), 0) + 1;
  if (id > 0xffff) throw new Error('an image holds at most 65,535 objects');
  const k = result.labels.findIndex((l) => l.label === label);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    result.instances[i] = id;
    if (k >= 0) result.labelMap[i] = k + 1;
  }
  result.objects.push({ id, label: k >= 0 ? label : null, class: k >= 0 ? k : null, score: score ?? 0, box: [0, 0, 0, 0], area: 0 });
  return recount(result);
}

// ---------------------------------------------------------------------------------------------
// Kept across reloads: each image's result in IndexedDB, under its folder, name, size and date.

const DB = 'wordmask-folders-v1';
const keyOf = ({ folder, name, file }) => `${folder}\u0001${name}\u0001${file.size}\u0001${file.lastModified}`;
const done = (request) => new Promise((resolve, reject) => { request.onsuccess = () => resolve(request.result); request.onerror = () => reject(request.error); });

// What a result is kept as (plain data: typed arrays and the fields the page draws).
const KEPT = ['width', 'height', 'labels', 'unlabelled', 'labelMap', 'confidence', 'engine', 'method', 'timings', 'objects', 'counts', 'instances', 'run'];
const plain = (result) => Object.fromEntries(KEPT.filter((k) => k in result).map((k) => [k, result[k]]));

// ---------------------------------------------------------------------------------------------

export class FolderMode {
  /**
   * `client`: the page's ModelClient. `ui`: the folder's elements (`panels`, shown once a folder is taken, `strip`, `progress`,
   * `status`, `run`, `stop`, `download`, `formats` (checkboxes, value = format), `polygons`,
   * `minArea`, `fix`, `fixWord`, `fixApply`, `fixRemove`, `fixAbout`, `prev`, `next`).
   * `hooks`: `words()` (the typed words), `options()` (the settings chosen), `sharp()`
   * (sharp edges on), `ready()` (why the folder cannot be labelled yet, or null), `show(image,
   * result)` (the main view), `save(blob, name)`, `busy(on, text)` (text: for the page's status line).
   */
  constructor(client, ui, hooks) {
    Object.assign(this, { client, ui, hooks });
    this.folder = null;
    this.images = [];
    this.selected = -1;
    this.running = false;
    this.stopping = false;
    this.db = openStore(DB, 'results');
    ui.run.onclick = () => this.run();
    ui.stop.onclick = () => { this.stopping = true; };
    ui.download.onclick = () => this.download().catch((e) => this.say(`The zip could not be made: ${e.message}`));
    ui.fixApply.onclick = () => this.fixObject('word');
    ui.fixRemove.onclick = () => this.fixObject('remove');
    ui.prev.onclick = () => this.select(this.selected - 1);
    ui.next.onclick = () => this.select(this.selected + 1);
    ui.strip.addEventListener('keydown', (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 1, ArrowUp: -1 }[e.key];
      if (step === undefined || !this.images.length) return;
      e.preventDefault();
      this.select(this.selected + step, { focus: true });
    });
  }

  say(text) {
    this.ui.status.textContent = text;
  }

  /** The image shown, if it is one of the folder's. */
  get current() {
    return this.images[this.selected] ?? null;
  }

  /** A picked or dropped folder: `files` as `{file, path}` (see listImages). */
  async take(files) {
    let listed;
    try {
      listed = listImages(files);
    } catch (e) {
      this.say(`This folder cannot be labelled: ${e.message}.`);
      return;
    }
    if (!listed.images.length) {
      this.say(`${listed.folder} holds no PNG or JPEG image (subfolders are not read).`);
      return;
    }
    this.stopping = true; // a run on another folder ends
    this.folder = listed.folder;
    this.images = listed.images.map((image) => ({ ...image, folder: listed.folder, result: null, thumb: null }));
    this.selected = -1;
    for (const panel of this.ui.panels) panel.hidden = false;
    await this.restore();
    this.renderStrip();
    const kept = this.images.filter((i) => i.result).length;
    const notes = [];
    if (listed.left.subfolders) notes.push(`${listed.left.subfolders} in subfolders`);
    if (listed.left.others) notes.push(`${listed.left.others} not PNG or JPEG`);
    this.say(`${this.folder}: ${this.images.length} images${notes.length ? ` (left out: ${notes.join(', ')}, as the CLI does)` : ''}`
      + `${kept ? `; ${kept} labelled before, kept from the last visit` : ''}. Type the words, then press Label the folder.`);
    this.updateButtons();
    this.thumbnails();
    await this.select(0);
  }

  async restore() {
    const db = await this.db;
    if (!db) return;
    try {
      const store = db.transaction('results').objectStore('results');
      await Promise.all(this.images.map(async (image) => {
        const kept = await done(store.get(keyOf(image)));
        if (kept) image.result = kept;
      }));
    } catch (e) {
      console.warn(`the folder's earlier labels could not be read: ${e?.message ?? e}`);
    }
  }

  async keep(image) {
    const db = await this.db;
    if (!db || !image.result) return;
    try {
      const store = db.transaction('results', 'readwrite').objectStore('results');
      await done(store.put(plain(image.result), keyOf(image)));
    } catch (e) {
      console.warn(`the image's labels are not kept: ${e?.message ?? e}`);
    }
  }

  renderStrip() {
    const { strip } = this.ui;
    strip.replaceChildren(...this.images.map((image, k) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.className = 'thumb';
      b.dataset.name = image.name;
      b.tabIndex = k === Math.max(0, this.selected) ? 0 : -1;
      const canvas = Object.assign(document.createElement('canvas'), { width: 1, height: 1 });
      canvas.setAttribute('aria-hidden', 'true');
      b.append(canvas, Object.assign(document.createElement('span'), { textContent: image.name }));
      b.onclick = () => this.select(k);
      li.append(b);
      image.button = b;
      this.mark(image);
      if (image.thumb) this.drawThumb(image);
      return li;
    }));
  }

  // A thumbnail's state: labelled or not, and which one is shown.
  mark(image) {
    const b = image.button;
    if (!b) return;
    const k = this.images.indexOf(image);
    b.classList.toggle('done', Boolean(image.result));
    b.setAttribute('aria-current', String(k === this.selected));
    b.tabIndex = k === this.selected ? 0 : -1;
    const objects = image.result?.objects?.length;
    b.setAttribute('aria-label', `${image.name}, ${image.result ? `labelled${objects != null ? `, ${objects} objects` : ''}` : 'not labelled yet'}`);
  }

  drawThumb(image) {
    const canvas = image.button?.querySelector('canvas');
    if (!canvas) return;
    canvas.width = image.thumb.width;
    canvas.height = image.thumb.height;
    canvas.getContext('2d').drawImage(image.thumb, 0, 0);
  }

  // Thumbnails one after another, while the page stays usable.
  async thumbnails() {
    const images = this.images;
    for (const image of images) {
      if (this.images !== images) return;
      try {
        const bitmap = await createImageBitmap(image.file, { imageOrientation: 'from-image' });
        const scale = 72 / Math.max(bitmap.width, bitmap.height);
        image.thumb = await createImageBitmap(bitmap, { resizeWidth: Math.max(1, Math.round(bitmap.width * scale)), resizeHeight: Math.max(1, Math.round(bitmap.height * scale)), resizeQuality: 'medium' });
        bitmap.close();
        this.drawThumb(image);
      } catch { /* an image that does not decode says so when it is labelled */ }
    }
  }

  /** The image's pixels, upright (EXIF), as the page and the CLI read them. */
  async pixels(image) {
    const bitmap = await createImageBitmap(image.file, { imageOrientation: 'from-image' });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    return { bitmap, width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data, folderImage: image };
  }

  /** Show image `k` of the folder in the main view, with its result. */
  async select(k, { focus = false } = {}) {
    if (!this.images.length) return;
    k = Math.max(0, Math.min(this.images.length - 1, k));
    const before = this.current;
    this.selected = k;
    if (before) this.mark(before);
    const image = this.images[k];
    this.mark(image);
    if (focus) image.button?.focus();
    image.button?.scrollIntoView?.({ block: 'nearest', inline: 'nearest' });
    this.updateButtons();
    let pixels;
    try {
      pixels = await this.pixels(image);
    } catch {
      this.say(`${image.name} could not be decoded.`);
      return;
    }
    if (this.current !== image) return;
    this.hooks.show(pixels, image.result);
    this.showFix(null);
  }

  /** What a result was made with: another run with other words or settings does it again. */
  runKey() {
    return JSON.stringify({ words: this.hooks.words(), options: this.hooks.options(), sharp: this.hooks.sharp() });
  }

  /** Label every image not labelled yet with these words and settings, one after another. */
  async run() {
    if (this.running) return;
    const why = this.hooks.ready();
    if (why) { this.say(why); return; }
    const key = this.runKey();
    const todo = this.images.filter((i) => i.result?.run !== key);
    if (!todo.length) { this.say(`Every image is labelled with these words and settings. ${this.images.length} ready to download.`); return; }
    this.running = true;
    this.stopping = false;
    this.hooks.busy(true, `Labelling the folder ${this.folder}…`);
    this.updateButtons();
    const { progress } = this.ui;
    progress.max = todo.length;
    progress.value = 0;
    progress.hidden = false;
    const started = performance.now();
    const failed = [];
    const words = this.hooks.words();
    const options = this.hooks.options();
    const sharp = this.hooks.sharp();
    let count = 0;
    const { images } = this;
    for (const image of todo) {
      if (this.stopping || this.images !== images) break;
      const left = count ? Math.round(((performance.now() - started) / count) * (todo.length - count) / 1000) : null;
      this.say(`Labelling ${image.name}: ${count + 1} of ${todo.length}${left != null ? `, about ${left} s left` : ''}…`);
      try {
        const { width, height, rgba } = await this.pixels(image);
        const result = await this.client.segment({ rgba: new Uint8Array(rgba), width, height, labels: words, options, sharp });
        await this.store(image, result, { words, key });
      } catch (e) {
        failed.push(`${image.name} (${e.message})`);
      }
      count += 1;
      progress.value = count;
    }
    const stopped = this.stopping && count < todo.length;
    this.running = false;
    this.stopping = false;
    if (this.images !== images) { this.hooks.busy(false, ''); this.updateButtons(); return; } // another folder was taken
    this.updateButtons();
    const labelled = this.images.filter((i) => i.result).length;
    this.say(`${stopped ? 'Stopped' : 'Done'}: ${count - failed.length} labelled now, ${labelled} of ${this.images.length} in all`
      + `${failed.length ? `; failed: ${failed.join(', ')}` : ''}. Pick a thumbnail to look at one and fix it; then download.`);
    this.hooks.busy(false, `The folder is labelled (${labelled} of ${this.images.length} images): see Folder, under the image.`);
  }

  /**
   * Keep `result` (a segmentation with these words) as `image`'s: without sharp edges its
   * objects are the words' connected regions (the core's, as the exports take them).
   */
  async store(image, result, { words = this.hooks.words(), key = this.runKey() } = {}) {
    if (!result.objects) Object.assign(result, await this.client.wordObjects({ ...result, labels: words }));
    result.run = key;
    image.result = plain(result);
    this.mark(image);
    await this.keep(image);
    if (this.current === image) this.hooks.show(null, image.result);
  }

  /** The pressed object of the image shown (or none): the bar to give it another word or remove it. */
  showFix(id) {
    const { fix, fixWord, fixAbout } = this.ui;
    const result = this.current?.result;
    const object = id != null ? result?.objects.find((o) => o.id === id) : null;
    fix.hidden = !object;
    if (!object) return;
    this.fixing = id;
    fixAbout.textContent = `Object ${id}${object.label ? ` (${object.label})` : ''}:`;
    fixWord.replaceChildren(...result.labels.map((l, k) => Object.assign(document.createElement('option'), { value: k, textContent: l.label, selected: k === object.class })));
  }

  /** Give the pressed object the word chosen, or remove it; the result is kept. */
  async fixObject(action) {
    const image = this.current;
    if (!image?.result || this.fixing == null) return;
    const id = this.fixing;
    if (action === 'remove') removeObject(image.result, id);
    else reassign(image.result, id, Number(this.ui.fixWord.value));
    this.ui.fix.hidden = true;
    this.fixing = null;
    await this.keep(image);
    this.mark(image);
    this.hooks.show(null, image.result);
    this.say(action === 'remove' ? `Removed object ${id} from ${image.name}.` : `Object ${id} of ${image.name} is ${this.ui.fixWord.selectedOptions[0]?.textContent} now.`);
  }

  /** Point mode's outlined objects (`[{mask, label, score}]`) added to the image shown. */
  async addObjects(objects) {
    const image = this.current;
    if (!image?.result) { this.say('Label this image first (Label the folder), then add objects to it.'); return 0; }
    for (const object of objects) addObject(image.result, object);
    await this.keep(image);
    this.mark(image);
    this.say(`Added ${objects.length} ${objects.length === 1 ? 'object' : 'objects'} to ${image.name}.`);
    return objects.length;
  }

  updateButtons() {
    const { run, stop, download, prev, next } = this.ui;
    run.disabled = this.running || !this.images.length;
    stop.hidden = !this.running;
    download.disabled = this.running || !this.images.some((i) => i.result);
    prev.disabled = this.selected <= 0;
    next.disabled = this.selected >= this.images.length - 1;
  }

  /** The formats ticked. */
  formats() {
    return [...this.ui.formats].filter((c) => c.checked).map((c) => c.value);
  }

  /**
   * The folder's labels as zip bytes: `<folder>-labels/` in the CLI's layout (coco.json and
   * coco_results.json merged, yolo/, labelme/ with image paths for the zip unpacked beside the
   * folder, voc/). Every labelled image must share one set of words.
   */
  async zip() {
    const formats = this.formats();
    if (!formats.length) throw new Error('tick one format or more');
    const labelled = this.images.filter((i) => i.result);
    const runs = new Set(labelled.map((i) => JSON.parse(i.result.run).words));
    if (runs.size > 1) throw new Error('the images were labelled with different words: press Label the folder to label them all with the words typed now');
    const [words] = runs;
    const root = `${this.folder}-labels/`;
    const files = {};
    const cocoParts = [];
    const options = { polygons: this.ui.polygons.checked, minArea: Number(this.ui.minArea.value) || 0 };
    for (const image of labelled) {
      const source = { ...image.result, labels: words };
      const request = exportRequest(source, formats, { ...options, fileName: image.name, imageId: image.id, imagePath: `../../${this.folder}/${image.name}` });
      const { files: written } = await this.client.exportImage(request);
      for (const file of written) {
        if (file.format === 'coco') cocoParts.push(new TextDecoder().decode(file.bytes));
        else files[root + file.path] = file.bytes;
      }
    }
    const { files: lists } = await this.client.exportFolder({ labels: words, formats, yoloPath: '.' }, cocoParts);
    for (const file of lists) files[root + file.path] = file.bytes;
    return { bytes: zipSync(files, { level: 6 }), count: labelled.length, name: `${this.folder}-labels.zip` };
  }

  async download() {
    this.say('Writing the labels…');
    const { bytes, count, name } = await this.zip();
    this.hooks.save(new Blob([bytes], { type: 'application/zip' }), name);
    const missing = this.images.length - count;
    this.say(`Downloaded ${name}: ${count} images${missing ? ` (${missing} not labelled yet are left out)` : ''}. Unzip it beside the ${this.folder} folder.`);
  }
}
