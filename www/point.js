// Point mode: click an object (or drag a box around it) and Segment Anything outlines it; the
// object is named by the typed words when the words model is a CLIP checkpoint. Shift-click
// adds a point to the last object, Alt-click (Option on a Mac) marks a point that is not on it.
// The image is encoded once (the heavy pass); each click only runs the prompt decoder.
// Objects build up one label map: later objects on top, each keeping its word and colour.

/** Pixels between press and release beyond which a press is a box, not a click. */
const DRAG = 4;

export class PointMode {
  /**
   * `client`: the page's ModelClient; `canvas`: where the image is shown; `hooks`:
   * `status(text)`, `changed()` (redraw), `image()` (the current {rgba, width, height} or null),
   * `request()` ({labels, options} for naming).
   */
  constructor(client, canvas, hooks) {
    this.client = client;
    this.canvas = canvas;
    this.hooks = hooks;
    this.active = false;
    this.objects = [];
    this.history = [];
    this.busy = false;
    this.press = null;
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointerup', (e) => this.up(e));
  }

  /** Image pixels under a pointer event. */
  at(e) {
    const rect = this.canvas.getBoundingClientRect();
    const { width, height } = this.canvas;
    return {
      x: Math.min(width - 1, Math.max(0, ((e.clientX - rect.left) / rect.width) * width)),
      y: Math.min(height - 1, Math.max(0, ((e.clientY - rect.top) / rect.height) * height)),
    };
  }

  down(e) {
    if (!this.active || !this.hooks.image()) return;
    this.press = this.at(e);
    this.canvas.setPointerCapture?.(e.pointerId);
  }

  up(e) {
    if (!this.press) return;
    const start = this.press;
    const end = this.at(e);
    this.press = null;
    const scale = this.canvas.width / this.canvas.getBoundingClientRect().width;
    if (Math.hypot(end.x - start.x, end.y - start.y) > DRAG * scale) {
      const box = [Math.min(start.x, end.x), Math.min(start.y, end.y), Math.max(start.x, end.x), Math.max(start.y, end.y)];
      this.newObject({ points: [], box });
    } else if ((e.altKey || e.shiftKey) && this.objects.length) {
      this.addPoint({ x: end.x, y: end.y, positive: !e.altKey });
    } else if (!e.altKey) {
      this.newObject({ points: [{ x: end.x, y: end.y, positive: true }], box: null });
    }
  }

  /** A new object from a prompt ({points, box}); resolves with it once outlined. */
  newObject(prompt) {
    const object = { prompt, mask: null, label: null, probability: null, classIndex: null, iou: null, area: 0 };
    this.objects.push(object);
    this.history.push({ object });
    return this.run(object);
  }

  /** One more point on the last object. */
  addPoint(point) {
    const object = this.objects[this.objects.length - 1];
    object.prompt.points.push(point);
    this.history.push({ object, point });
    return this.run(object);
  }

  undo() {
    const step = this.history.pop();
    if (!step) return undefined;
    if (!step.point) {
      this.objects.splice(this.objects.indexOf(step.object), 1);
      this.hooks.changed();
      return undefined;
    }
    step.object.prompt.points.pop();
    return this.run(step.object);
  }

  clear() {
    this.objects = [];
    this.history = [];
    this.hooks.changed();
  }

  /** A new image: its objects go (the client encodes it at the next prompt). */
  reset() {
    this.objects = [];
    this.history = [];
  }

  async run(object) {
    const image = this.hooks.image();
    if (!image) return object;
    this.busy = true;
    try {
      this.hooks.status('Outlining…');
      const { labels, options } = this.hooks.request();
      const onEncode = () => this.hooks.status('Encoding the image (once per image)…');
      const result = await this.client.prompt({ image, prompt: object.prompt, labels, options, onEncode });
      Object.assign(object, { mask: result.mask, label: result.label ?? null, probability: result.probability ?? null, classIndex: result.classIndex ?? null, iou: result.iou, area: result.area });
      const name = object.label ? `${object.label} (${(object.probability * 100).toFixed(0)} %)` : 'an object (type words, with a CLIP model loaded, to name it)';
      this.hooks.status(object.area ? `Outlined ${name}.` : 'No object found there.');
    } catch (e) {
      this.hooks.status(`Error: ${e.message}`);
    } finally {
      this.busy = false;
      this.hooks.changed();
    }
    return object;
  }

  /**
   * The objects as one map: `map[i]` is 1 + the index of the topmost object at pixel i (0 =
   * none), with one entry per object in `objects`.
   */
  layer(width, height) {
    const map = new Uint8Array(width * height);
    const shown = this.objects.filter((o) => o.mask && o.mask.length === map.length).slice(-255);
    shown.forEach((o, k) => { o.mask.forEach((v, i) => { if (v) map[i] = k + 1; }); });
    return { map, objects: shown };
  }
}
