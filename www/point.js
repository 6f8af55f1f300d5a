// Point mode: click an object (or drag a box around it) and Segment Anything outlines it; the
// object is named by the typed words when the words model is a CLIP checkpoint. Shift-click
// adds a point to the last object, Alt-click (Option on a Mac) marks a point that is not on it.
// The image is encoded once (the heavy pass); each click only runs the prompt decoder.
// Objects build up one label map: later objects on top, each keeping its word and colour.
// Clicks wait their turn (one prompt at a time, in order), so a burst of clicks while the image
// is being encoded costs one encoding and then one decode each; a click with no Segment
// Anything model loaded makes no object, and a prompt that fails or finds nothing leaves none.

/** Pixels between press and release beyond which a press is a box, not a click. */
const DRAG = 4;

export class PointMode {
  /**
   * `client`: the page's ModelClient; `canvas`: where the image is shown; `hooks`:
   * `status(text)`, `changed()` (redraw), `image()` (the current {rgba, width, height} or null),
   * `request()` ({labels, options} for naming), `unready()` (why clicks cannot be outlined
   * yet, or null once a prompt model is loaded).
   */
  constructor(client, canvas, hooks) {
    this.client = client;
    this.canvas = canvas;
    this.hooks = hooks;
    this.active = false;
    this.objects = [];
    this.history = [];
    this.queue = Promise.resolve(); // the prompts, one after the other
    this.waiting = 0; // prompts queued behind the one running
    this.running = null; // what the prompt running is doing ('Encoding the image…'), if one is
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
      if (this.usable()) this.newObject({ points: [], box });
    } else {
      this.point(end, { add: e.shiftKey, negative: e.altKey });
    }
  }

  /**
   * A click at `{x, y}` (image pixels): a new object, or with `add` one more point on the last
   * object (`negative`: a point that is not on it). Keyboard users reach this from the probe.
   */
  point({ x, y }, { add = false, negative = false } = {}) {
    if (!this.usable()) return undefined;
    if ((add || negative) && this.objects.length) return this.addPoint({ x, y, positive: !negative });
    if (negative) return undefined;
    return this.newObject({ points: [{ x, y, positive: true }], box: null });
  }

  /** Whether a click can be outlined now; if not, the status says why and what to do. */
  usable() {
    const why = this.hooks.unready();
    if (why) this.hooks.status(why);
    return !why;
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
      const number = this.objects.indexOf(step.object) + 1;
      this.forget(step.object);
      const left = this.objects.length;
      this.hooks.status(`Removed object ${number}${step.object.label ? ` (${step.object.label})` : ''}; ${left ? `${left} left` : 'none left'}.`);
      this.hooks.changed();
      return undefined;
    }
    step.object.prompt.points.pop();
    return this.run(step.object);
  }

  clear() {
    this.objects = [];
    this.history = [];
    this.hooks.status('Objects cleared. Click an object to outline it.');
    this.hooks.changed();
  }

  /** An object gone, with every step of the history that made it. */
  forget(object) {
    this.objects = this.objects.filter((o) => o !== object);
    this.history = this.history.filter((step) => step.object !== object);
  }

  /** A new image: its objects go (the client encodes it at the next prompt). */
  reset() {
    this.objects = [];
    this.history = [];
  }

  /** Outline `object` once the prompts before it are done. */
  run(object) {
    this.waiting += 1;
    if (this.running) this.doing(this.running);
    const turn = this.queue.then(() => {
      this.waiting -= 1;
      return this.outline(object);
    });
    this.queue = turn;
    return turn;
  }

  /** The status while a prompt runs: what it does, and how many clicks wait for it. */
  doing(what) {
    this.running = what;
    const waiting = this.waiting ? ` ${this.waiting} more ${this.waiting > 1 ? 'clicks wait' : 'click waits'}.` : '';
    this.hooks.status(`${what}${waiting}`);
  }

  async outline(object) {
    const image = this.hooks.image();
    if (!image || !this.objects.includes(object)) return object; // undone or cleared meanwhile
    const fresh = !object.mask;
    try {
      this.doing('Outlining…');
      const { labels, options } = this.hooks.request();
      const onEncode = () => this.doing('Encoding the image (once per image)…');
      const result = await this.client.prompt({ image, prompt: object.prompt, labels, options, onEncode });
      if (fresh && !result.area) {
        this.forget(object);
        this.hooks.status('No object found there: click inside an object, or drag a box around it.');
        return object;
      }
      Object.assign(object, { mask: result.mask, label: result.label ?? null, probability: result.probability ?? null, classIndex: result.classIndex ?? null, iou: result.iou, area: result.area });
      const name = object.label ? `${object.label} (${(object.probability * 100).toFixed(0)} %)` : 'an object (type words, with a CLIP model loaded, to name it)';
      this.hooks.status(object.area ? `Outlined ${name}.` : 'No object found there.');
    } catch (e) {
      // A failed prompt leaves nothing behind: a new object goes, an added point comes off.
      if (fresh) {
        this.forget(object);
      } else {
        const step = this.history.findLast((s) => s.object === object && s.point);
        if (step) {
          object.prompt.points.splice(object.prompt.points.indexOf(step.point), 1);
          this.history.splice(this.history.indexOf(step), 1);
        }
      }
      this.hooks.status(`Error: ${e.message}`);
    } finally {
      this.running = null;
      this.hooks.changed();
    }
    return object;
  }

  /** Objects that have been outlined (what the legend and the downloads hold). */
  get outlined() {
    return this.objects.filter((o) => o.mask);
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
