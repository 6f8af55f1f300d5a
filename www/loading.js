// What the page says while a model loads: download progress (with the part kept from an
// earlier try, and retries that say whether the host was ever reached), a failure that names
// the host and offers the next steps as buttons beside the Load button, and which of the
// picked local files were used. app.js calls these; the model itself is the worker's.

const mb = (bytes) => (bytes / 1e6).toFixed(1);

/**
 * The status line for a download's progress event (client.js's 'progress'); `started`: the
 * performance.now() at which this load began, for its speed.
 */
export function progressText({ file, loaded, total, cached, resumed = 0, retrying, of, connected, host }, started) {
  if (cached) return `Loading ${file} from this browser's cache (${mb(total)} MB)…`;
  if (retrying) {
    const why = connected ? `The connection to ${host} broke at ${mb(loaded)} MB` : `Cannot reach ${host}`;
    return `${why}; trying again (${retrying} of ${of})…`;
  }
  // The speed counts only what came over the network in this load, not the bytes kept.
  const seconds = Math.max((performance.now() - started) / 1000, 1e-3);
  const speed = (loaded - resumed) / seconds;
  const kept = resumed ? ` (resumed at ${mb(resumed)} MB kept from before)` : '';
  const eta = total && speed > 0 ? ` · ${Math.max(0, (total - loaded) / speed).toFixed(0)} s left` : '';
  return `Downloading ${file}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB${kept} · ${mb(speed)} MB/s${eta}`;
}

/**
 * What to do after a failed load (`error` from client.load, a ModelError: `code` 'network',
 * 'http' with `status` in its message, 'model-not-found' with the `host` asked for a URL, or
 * another for a checkpoint the core refused): `{next, actions}`, a sentence and the buttons to
 * offer ('retry', 'files', 'url').
 */
export function nextSteps(error) {
  if (error.code === 'model-not-found' && error.host) {
    return { next: 'Check the checkpoint\'s id or folder URL, or choose its files on this device.', actions: ['url', 'files'] };
  }
  if (error.code === 'network') {
    return {
      next: 'Check the connection and try again, choose the checkpoint\'s files on this device (config.json and the weights), or give the URL of a folder that holds them.',
      actions: ['retry', 'files', 'url'],
    };
  }
  if (error.code === 'http') {
    const status = Number(/HTTP (\d+)/.exec(error.message)?.[1]);
    if (status === 404) return { next: 'Check the checkpoint\'s id or folder URL, or choose its files on this device.', actions: ['url', 'files'] };
    if (status === 401 || status === 403) return { next: 'Download its files where you may, then choose them on this device.', actions: ['files', 'url'] };
    return { next: 'Try again later, choose the checkpoint\'s files on this device, or give the URL of another folder that holds them.', actions: ['retry', 'files', 'url'] };
  }
  return { next: 'Choose another checkpoint, or choose its files again.', actions: ['files', 'url'] };
}

const ACTION_TEXT = { retry: 'Try again', files: 'Choose local files', url: 'Use a folder URL' };

/**
 * Shows a failed load in `box` (beside the Load button, so that it is seen where the visitor
 * pressed it, on a phone too): the message, the next step and a button per action, each
 * calling `handlers[action]()`. Gives the status line for the page's live status.
 */
export function showLoadProblem(box, error, handlers) {
  const { next, actions } = nextSteps(error);
  const said = error.message.replace(/\.$/, '');
  const message = said.replace(/^./, (c) => c.toUpperCase());
  const text = Object.assign(document.createElement('p'), { textContent: `${message}. ${next}` });
  const row = Object.assign(document.createElement('div'), { className: 'row' });
  row.append(...actions.map((action) => {
    const button = Object.assign(document.createElement('button'), { type: 'button', textContent: ACTION_TEXT[action] });
    button.dataset.action = action;
    button.onclick = () => handlers[action]();
    return button;
  }));
  box.replaceChildren(text, row);
  box.hidden = false;
  box.scrollIntoView({ block: 'nearest' });
  return `Error: ${said}. ${next}`;
}

/** Empties the problem box (a new load starts). */
export function clearLoadProblem(box) {
  box.replaceChildren();
  box.hidden = true;
}

/** Which picked files a load used, from the ready reply's `files` ({used, ignored}). */
export function filesText({ used, ignored }) {
  const and = (names) => (names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : names[0]);
  return `Loaded from ${and(used)}${ignored.length ? `; left out ${and(ignored)}` : ''}.`;
}
