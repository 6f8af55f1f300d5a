// The page's Performance readout (index.html's #performance, beside the device line that app.js
// writes: the adapter as the browser names it, and whether the model computes in f16): the
// camera's frame rate, and the milliseconds of each stage of the last run (the core's `timings`,
// Segment Anything's with sharp edges and Name everything), saying which run that was: a quick
// look (progressive.js), a full result or a camera frame.

const ms = (v) => `${Math.round(v)} ms`;

// What a run was, as the readout names it.
const KIND = {
  preview: 'quick look',
  final: 'full result',
  frame: 'camera frame',
  everything: 'Name everything',
};

export class PerformanceReadout {
  /** `fps`, `run`: the elements of the frame rate and the last run; `table`: the stages' table. */
  constructor({ fps, run, table }) {
    Object.assign(this, { fpsText: fps, runText: run, table });
  }

  /** The camera's masks per second, or null when no camera is live (none, or frozen). */
  frameRate(fps) {
    this.fpsText.textContent = fps == null ? 'no live camera' : `${fps.toFixed(1)} frames per second (camera)`;
  }

  /**
   * A run's stages: `kind` ('preview', 'final', 'frame' or 'everything'); `about`, what it was
   * (the quick look's size, what the full run refined); `before`, the milliseconds of the quick
   * look that came before a full result.
   */
  show(result, kind, { about, before } = {}) {
    const rows = stageRows(result);
    const total = rows.reduce((sum, [, v]) => sum + v, 0);
    const what = [`${KIND[kind]}${about ? ` (${about})` : ''}`, `${ms(total)} in all`];
    if (before != null) what.push(`after a ${ms(before)} quick look`);
    this.runText.textContent = `${what.join(', ')}.`;
    this.table.querySelector('caption').textContent = `Milliseconds per stage of the ${KIND[kind]}`;
    this.table.tBodies[0].replaceChildren(...[...rows, ['total', total]].map(([stage, v]) => {
      const tr = document.createElement('tr');
      const th = Object.assign(document.createElement('th'), { scope: 'row', textContent: stage });
      tr.append(th, Object.assign(document.createElement('td'), { textContent: ms(v) }));
      return tr;
    }));
    this.table.hidden = false;
  }
}

/** The stages of a result, [name, milliseconds] in the order they ran. */
export function stageRows({ timings, encodeMs, masksMs, labelMap }) {
  if (!labelMap) return [['encoding the image', encodeMs], ['masks and names', masksMs]];
  const rows = [['words (text encoder)', timings.text], ['image (image encoder)', timings.image],
    ['reading the scores back', timings.scores], ['label map', timings.finish]];
  if (encodeMs != null) rows.push(['sharp edges: encoding', encodeMs], ['sharp edges: masks', masksMs]);
  return rows;
}

/** The milliseconds of all a result's stages. */
export const totalMs = (result) => stageRows(result).reduce((sum, [, v]) => sum + v, 0);
