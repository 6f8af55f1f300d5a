// A keyboard probe over the image: the canvas takes the focus, arrow keys move a crosshair over
// it, and the word under the crosshair is read out through a live region (what hovering shows a
// mouse user). Enter does what a click does there (in Point mode: outline the object; with
// Shift, add a point to the last object; with Alt, mark a point off it).

/** Steps across the image an arrow key moves the probe (Shift: one pixel). */
const STEPS = 20;

export class Probe {
  /**
   * `canvas`: the image (its `width` and `height` are the image's pixels); `hooks`:
   * `nameAt(x, y)` (what is under pixel x, y, or null when nothing is shown), `press(x, y,
   * {add, negative})` (Enter).
   */
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.hooks = hooks;
    this.at = null;
    canvas.tabIndex = 0;
    // Arrow keys reach the canvas in a screen reader's browse mode too.
    canvas.setAttribute('role', 'application');
    const help = Object.assign(document.createElement('p'), {
      id: 'probe-help',
      className: 'visually-hidden',
      textContent: 'Arrow keys move a probe over the image and read out the word under it (Shift: one pixel at a time); Enter outlines the object there in Point mode.',
    });
    this.marker = Object.assign(document.createElement('div'), { className: 'probe-marker', hidden: true });
    this.marker.setAttribute('aria-hidden', 'true');
    this.say = Object.assign(document.createElement('p'), { id: 'probe-say', className: 'visually-hidden' });
    this.say.setAttribute('aria-live', 'polite');
    canvas.setAttribute('aria-describedby', help.id);
    canvas.after(this.marker);
    canvas.parentElement.after(help, this.say);
    // A click focuses the canvas too: the probe is for keyboard focus only.
    canvas.addEventListener('focus', () => { if (canvas.matches(':focus-visible')) this.show(); });
    canvas.addEventListener('blur', () => { this.marker.hidden = true; });
    canvas.addEventListener('keydown', (e) => this.key(e));
  }

  show() {
    const { width, height } = this.canvas;
    if (width < 2) return;
    if (!this.at || this.at.x >= width || this.at.y >= height) this.at = { x: Math.floor(width / 2), y: Math.floor(height / 2) };
    this.update();
  }

  key(e) {
    const move = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
    if (move && !this.at) this.show();
    if (move && this.at) {
      e.preventDefault();
      const { width, height } = this.canvas;
      const stride = (side) => (e.shiftKey ? 1 : Math.max(1, Math.round(side / STEPS)));
      this.at = {
        x: Math.min(width - 1, Math.max(0, this.at.x + move[0] * stride(width))),
        y: Math.min(height - 1, Math.max(0, this.at.y + move[1] * stride(height))),
      };
      this.update();
    } else if (e.key === 'Enter' && this.at) {
      e.preventDefault();
      this.hooks.press(this.at.x, this.at.y, { add: e.shiftKey, negative: e.altKey });
    }
  }

  /** The crosshair where the probe is, and what is under it said. */
  update() {
    const { x, y } = this.at;
    const { canvas, marker } = this;
    marker.hidden = !canvas.matches(':focus-visible');
    marker.style.left = `${canvas.offsetLeft + ((x + 0.5) / canvas.width) * canvas.clientWidth}px`;
    marker.style.top = `${canvas.offsetTop + ((y + 0.5) / canvas.height) * canvas.clientHeight}px`;
    const what = this.hooks.nameAt(x, y);
    this.say.textContent = `${what ?? 'no masks yet'} at ${x}, ${y}`;
  }
}
