// Objects on the page: what sharp edges and Name everything give beside a label map (the core's
// `objects`, `counts` and `instances`: src/segment/objects.rs). The list under the legend (a
// count per word, then one entry per object: hovering or focusing one outlines it on the image,
// pressing it shows it alone), the map that Name everything draws, and the outline of one object.
import { keepingFocus } from './keyboard.js';

/** Entries listed before the rest fold behind "Show all N objects". */
export const OBJECTS_SHOWN = 24;

/** "red ×2, green ×1" for the words that have objects. */
export function countsText(counts) {
  return counts.filter((c) => c.count > 0).map(({ label, count }) => `${label} ×${count}`).join(', ');
}

/**
 * Each object's name on the page: its word and its number among that word's objects ("red 2"),
 * or "object N" when nothing named it.
 */
export function objectNames(objects) {
  const seen = new Map();
  return new Map(objects.map((o) => {
    if (!o.label) return [o.id, `object ${o.id}`];
    const n = (seen.get(o.label) ?? 0) + 1;
    seen.set(o.label, n);
    return [o.id, `${o.label} ${n}`];
  }));
}

/**
 * Name everything's result as the page's layer: the instance map (object ids) with one entry per
 * id. `wordColour(k)`: the colour of typed word k (1-based); `ownColour(k)`: a colour for the
 * unnamed object of id k. Each object's value in the label PNG is its word's number, or its own
 * id when it has no word (as Point mode's objects).
 */
export function everythingLayer(result, { wordColour, ownColour }) {
  const { width, height, objects, counts, instances } = result;
  const names = objectNames(objects);
  const entries = [];
  for (const o of objects) {
    const word = o.class == null ? null : o.class + 1;
    entries[o.id - 1] = { word: o.label ?? null, object: o.id, colour: word ? wordColour(word) : ownColour(o.id), text: names.get(o.id), value: word ?? o.id };
  }
  // The legend: one entry per word that has objects, its share the pixels of its objects.
  const area = new Map();
  for (const o of objects) if (o.label) area.set(o.label, (area.get(o.label) ?? 0) + o.area);
  // A word's colour is its class's (the typed words' order, or the classifier's for an
  // Open-Vocabulary SAM naming among its own classes), as the objects' are.
  const classOf = new Map(objects.filter((o) => o.label && o.class != null).map((o) => [o.label, o.class]));
  const legend = counts.filter((c) => c.count > 0).map((c) => {
    const k = (classOf.get(c.label) ?? counts.indexOf(c)) + 1;
    const share = area.get(c.label) / (width * height);
    return { word: c.label, colour: wordColour(k), text: `${c.label} ${(share * 100).toFixed(1)} %`, share };
  });
  const unnamed = objects.filter((o) => !o.label).length;
  const covered = objects.reduce((sum, o) => sum + o.area, 0);
  return {
    map: instances,
    entries,
    legend,
    rest: unnamed ? `${unnamed} unnamed ${unnamed > 1 ? 'objects' : 'object'}${counts.length ? '' : ' (type words to name them)'}` : null,
    summary: { width, height, objects, counts, covered: covered / (width * height) },
  };
}

/** The label map with only object `id`'s pixels kept (what "show it alone" draws). */
export function keepObject(map, instances, id) {
  const out = new map.constructor(map.length);
  for (let i = 0; i < map.length; i++) if (instances[i] === id) out[i] = map[i];
  return out;
}

/**
 * Outline object `id` in `pixels` (an ImageData as large as `instances`): its edge black and a
 * band inside it white, so that it shows over any colour.
 */
export function outlineObject(pixels, instances, id, band = 3) {
  const { width, height, data } = pixels;
  const inside = (x, y) => x >= 0 && y >= 0 && x < width && y < height && instances[y * width + x] === id;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!inside(x, y)) continue;
      let edge = band + 1;
      for (let d = 1; d <= band && edge > band; d++) {
        if (!inside(x - d, y) || !inside(x + d, y) || !inside(x, y - d) || !inside(x, y + d)) edge = d;
      }
      if (edge === 1) data.set([0, 0, 0], (y * width + x) * 4);
      else if (edge <= band) data.set([255, 255, 255], (y * width + x) * 4);
    }
  }
}

export class ObjectsList {
  /**
   * `box`: the section (hidden while there are no objects), holding `counts` (a line: "Objects:
   * red ×2, ..."), `list` (a <ul>) and `more` (a button, aria-expanded, unfolding entries past
   * OBJECTS_SHOWN). `highlight(id | null)` as the pointer or the focus enters or leaves an
   * entry; `isolate(id | null)` when an entry is pressed (again: every object shows).
   */
  constructor({ box, counts, list, more }, { highlight, isolate }) {
    Object.assign(this, { box, line: counts, list, more, highlight, isolate, objects: [], counts: [], isolated: null });
    more.addEventListener('click', () => {
      more.setAttribute('aria-expanded', String(more.getAttribute('aria-expanded') !== 'true'));
      this.render();
    });
  }

  /** Show `objects` with the words' `counts`; `colour(object)` is its swatch ([r, g, b]). */
  show(objects = [], counts = [], colour = () => [128, 128, 128], isolated = null) {
    Object.assign(this, { objects, counts, colour, isolated });
    this.render();
  }

  render() {
    const { objects, counts } = this;
    this.box.hidden = objects.length === 0 && counts.length === 0;
    const unnamed = objects.filter((o) => !o.label).length;
    const parts = [countsText(counts), unnamed ? `${unnamed} unnamed` : ''].filter(Boolean);
    this.line.textContent = `${objects.length} ${objects.length === 1 ? 'object' : 'objects'}${parts.length ? `: ${parts.join(', ')}` : ''}`;
    const open = this.more.getAttribute('aria-expanded') === 'true';
    // A word's objects side by side, in the typed words' order; unnamed ones last.
    const order = [...objects].sort((a, b) => (a.class ?? Infinity) - (b.class ?? Infinity) || a.id - b.id);
    const shown = open ? order : order.slice(0, OBJECTS_SHOWN);
    const names = objectNames(objects);
    keepingFocus(this.list, () => this.list.replaceChildren(...shown.map((o) => this.item(o, names.get(o.id)))), this.list.parentElement);
    this.more.hidden = objects.length <= OBJECTS_SHOWN;
    this.more.textContent = open ? `Show only the first ${OBJECTS_SHOWN} objects` : `Show all ${objects.length} objects`;
  }

  item(o, name) {
    const li = document.createElement('li');
    li.dataset.label = `object-${o.id}`;
    const b = document.createElement('button');
    b.className = 'legend-entry';
    const alone = this.isolated === o.id;
    b.setAttribute('aria-pressed', String(alone));
    b.title = alone ? 'show every object' : `show only ${name}`;
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${this.colour(o).join(',')})`;
    const [x0, y0, x1, y1] = o.box;
    const score = o.score == null ? '' : `, score ${o.score.toFixed(2)}`;
    b.append(sw, name, Object.assign(document.createElement('span'), {
      className: 'object-about',
      textContent: ` ${o.area.toLocaleString('en')} px${score}`,
      title: `box ${x0},${y0} to ${x1},${y1}`,
    }));
    const on = () => this.highlight(o.id);
    const off = () => this.highlight(null);
    b.addEventListener('pointerenter', on);
    b.addEventListener('pointerleave', off);
    b.addEventListener('focus', on);
    b.addEventListener('blur', off);
    b.onclick = () => this.isolate(alone ? null : o.id);
    li.append(b);
    return li;
  }
}
