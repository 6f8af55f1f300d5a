// Video files in the page: a file picked or dropped plays in a <video> (not shown: its frames go
// to the page's canvas), and its frames are segmented as the camera's are (client.segmentFrame,
// the "Steady labels" slider's smoothing, objects that keep their ids).
//
// - Play: the newest frame is segmented whenever the model is free (frames in between are
//   dropped, as with the camera). Pause keeps the frame shown; a seek is a scene cut: the frames
//   before are forgotten (client.resetVideo) and the frame sought to is segmented afresh.
// - Label the whole video: every frame from the start, in order, none dropped (frames.js steps
//   through them), each kept as a label PNG; while it runs the canvas is recorded (canvas
//   captureStream and MediaRecorder, where the browser has them), one recorded frame a video
//   frame. Then one zip of the label PNGs in the layout `wordmask segment --video` writes
//   (000001.png…, objects/000001.png…, video.json), and the overlay video as WebM.
import { zipSync } from './vendor/fflate.js';
import { eachFrame, grabFrame, openVideo } from './frames.js';
import { greyPng } from './masks.js';

/** A frame's file name, as the CLI names them: 000001.png for the first. */
export const frameName = (n) => `${String(n).padStart(6, '0')}.png`;

// The recorder's formats, best first.
const WEBM = ['video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm'];

const seconds = (t) => `${Math.floor(t / 60)}:${(t % 60).toFixed(1).padStart(4, '0')}`;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class VideoMode {
  /**
   * `client`: the page's ModelClient. `ui`: the elements: `video` (the <video>, hidden),
   * `panel`, `status`, `play`, `seek`, `time`, `label`, `stop`, `record`, `recordRow`,
   * `progress`, `downloadLabels`, `downloadOverlay`, `close`, `smoothRow`, `smooth` (the slider)
   * and `canvas` (the page's view, recorded). `hooks`: `words()`, `options()`, `ready()` (why
   * frames cannot be segmented yet, or null), `show(image, result)` (the main view; result null:
   * the frame alone), `busy()` (the page is segmenting something else), `setBusy(on)`,
   * `status(text)` (the page's status line), `stopCamera()`, `save(blob, name)`.
   */
  constructor(client, ui, hooks) {
    Object.assign(this, { client, ui, hooks });
    this.file = null;
    this.labelling = null; // {stop: AbortController} while the whole video is labelled
    this.frames = []; // the last whole-video run's frames: {labels, objects, record}
    this.overlay = null; // its recording (a Blob)
    this.live = false; // segmenting frames as the video plays
    this.ticket = 0; // the newest segmentation of a frame shown wins
    const { video } = ui;
    ui.recordRow.hidden = !('MediaRecorder' in globalThis && 'captureStream' in HTMLCanvasElement.prototype);
    ui.play.onclick = () => (video.paused || video.ended ? this.play() : video.pause());
    ui.seek.oninput = () => { if (!this.labelling) video.currentTime = Number(ui.seek.value); };
    ui.label.onclick = () => this.labelAll();
    ui.stop.onclick = () => this.labelling?.stop.abort();
    ui.close.onclick = () => this.close();
    ui.downloadLabels.onclick = () => this.downloadLabels().catch((e) => this.say(`The zip could not be made: ${e.message}`));
    ui.downloadOverlay.onclick = () => this.hooks.save(this.overlay, `${this.stem}-overlay.webm`);
    video.addEventListener('timeupdate', () => this.showTime());
    video.addEventListener('pause', () => {
      ui.play.textContent = 'Play';
      if (this.labelling || !this.file) return;
      this.live = false;
      this.say(video.ended ? 'The end: the last frame stays. Play starts again.' : 'Paused: the frame shown stays.');
    });
    video.addEventListener('play', () => { ui.play.textContent = 'Pause'; });
    // A seek is a cut: the frames before tell nothing about the frame sought to.
    video.addEventListener('seeking', () => { if (this.settled && !this.labelling) this.client.resetVideo().catch(() => {}); });
    video.addEventListener('seeked', () => { if (this.settled && !this.labelling && video.paused) this.segmentShown(); });
  }

  say(text) {
    this.ui.status.textContent = text;
  }

  get stem() {
    return (this.file?.name ?? 'video').replace(/\.[^.]*$/, '') || 'video';
  }

  /** A video file picked or dropped: its first frame on the canvas, segmented when a model is there. */
  async take(file) {
    this.close();
    this.hooks.stopCamera();
    const { ui } = this;
    this.file = file;
    this.settled = false; // opening seeks on its own
    ui.panel.hidden = false;
    ui.smoothRow.hidden = false;
    this.say(`Opening ${file.name}…`);
    this.hooks.status(`Opening the video ${file.name}…`);
    try {
      await openVideo(file, ui.video);
    } catch (e) {
      this.file = null;
      ui.smoothRow.hidden = true;
      this.updateButtons();
      this.say(`${e.message}.`);
      this.hooks.status(`The video could not be opened: ${e.message}.`);
      return;
    }
    if (this.file !== file) return;
    const { videoWidth: width, videoHeight: height, duration } = ui.video;
    if (width < 16 || height < 16 || width > 8192 || height > 8192) {
      this.close();
      this.hooks.status(`Videos must be 16 to 8192 pixels a side; this one is ${width}x${height}.`);
      return;
    }
    ui.seek.max = String(duration);
    this.settled = true;
    await this.client.resetVideo().catch(() => {});
    this.showTime();
    this.updateButtons();
    this.say(`${file.name}: ${width}x${height}, ${seconds(duration)}. Play shows masks as it plays; Label the whole video labels every frame.`);
    this.hooks.status(this.hooks.ready() ?? 'Video open: press Play, or Label the whole video.');
    await this.segmentShown();
  }

  /** Close the video (another image, the camera or a new file takes its place). */
  close() {
    const { ui } = this;
    this.labelling?.stop.abort();
    this.live = false;
    this.ticket++;
    ui.video.pause();
    if (ui.video.src.startsWith('blob:')) URL.revokeObjectURL(ui.video.src);
    ui.video.removeAttribute('src');
    ui.video.load();
    if (this.file) ui.smoothRow.hidden = true;
    this.file = null;
    this.settled = false;
    this.frames = [];
    this.overlay = null;
    ui.panel.hidden = true;
    this.updateButtons();
  }

  showTime() {
    const { video, seek, time } = this.ui;
    if (!this.file) return;
    seek.value = String(video.currentTime);
    time.textContent = `${seconds(video.currentTime)} / ${seconds(video.duration)}`;
  }

  updateButtons() {
    const { ui } = this;
    const running = Boolean(this.labelling);
    ui.play.disabled = !this.file || running;
    ui.seek.disabled = !this.file || running;
    ui.label.hidden = running;
    ui.label.disabled = !this.file;
    ui.stop.hidden = !running;
    ui.record.disabled = running;
    ui.progress.hidden = !running;
    ui.downloadLabels.disabled = running || !this.frames.length;
    ui.downloadOverlay.disabled = running || !this.overlay;
  }

  // The frame the video shows, as the page's image: {bitmap, width, height, rgba}.
  grab() {
    return grabFrame(this.ui.video);
  }

  // The frame shown, segmented as the next of the stream (or shown alone before a model is there).
  // `sharp`: Segment Anything redraws it, prompted by the previous frame's objects.
  async segmentFrame(frame, { sharp = false } = {}) {
    const result = await this.client.segmentFrame({
      rgba: new Uint8Array(frame.rgba), width: frame.width, height: frame.height,
      labels: this.hooks.words(), options: this.hooks.options(), smooth: Number(this.ui.smooth.value), sharp,
    });
    return result;
  }

  /** The frame on screen (after opening, or a seek while paused), segmented. */
  async segmentShown() {
    const ticket = ++this.ticket;
    if (!(await this.idle(ticket))) return;
    const frame = await this.grab().catch(() => null);
    if (!frame || ticket !== this.ticket || !this.file) return;
    if (this.hooks.ready()) { this.hooks.show(frame, null); return; }
    this.hooks.setBusy(true);
    try {
      const result = await this.segmentFrame(frame);
      if (ticket === this.ticket) this.hooks.show(frame, result);
    } catch (e) {
      this.hooks.show(frame, null);
      this.hooks.status(`Error: ${e.message}`);
    } finally {
      this.hooks.setBusy(false);
    }
  }

  // Once the page has segmented what it had in hand: false when `ticket` is no longer the newest.
  async idle(ticket) {
    while (this.hooks.busy()) {
      await pause(50);
      if (ticket !== this.ticket) return false;
    }
    return ticket === this.ticket;
  }

  /** Play: the newest frame segmented whenever the model is free. */
  async play() {
    const { video } = this.ui;
    if (video.ended) video.currentTime = 0;
    this.live = true;
    this.say('Playing: masks on the newest frame (frames in between are dropped). Pause keeps the frame shown.');
    const ticket = ++this.ticket;
    // Each frame the video presents (or each paint, where the browser cannot say).
    const next = () => {
      if (!this.live || ticket !== this.ticket) return;
      if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(tick); else requestAnimationFrame(tick);
    };
    const tick = async () => {
      if (this.hooks.busy()) { next(); return; }
      const frame = await this.grab().catch(() => null);
      if (!frame || !this.live || ticket !== this.ticket) return;
      if (this.hooks.ready()) {
        this.hooks.show(frame, null);
        next();
        return;
      }
      this.hooks.setBusy(true);
      try {
        const result = await this.segmentFrame(frame);
        if (ticket === this.ticket) this.hooks.show(frame, result);
      } catch (e) {
        this.hooks.status(`Error: ${e.message}`);
      } finally {
        this.hooks.setBusy(false);
      }
      next();
    };
    await video.play().catch((e) => this.say(`The video does not play: ${e.message}`));
    next();
  }

  /**
   * Label the whole video: every frame from the start, in order, each kept as a label PNG (and
   * its objects' ids), the canvas recorded as it goes.
   */
  async labelAll() {
    const why = this.hooks.ready();
    if (why) { this.say(why); return; }
    if (this.labelling) return;
    const { ui } = this;
    const { video } = ui;
    this.live = false;
    video.pause();
    if (!(await this.idle(++this.ticket)) || this.labelling) return;
    const stop = new AbortController();
    this.labelling = { stop };
    this.frames = [];
    this.overlay = null;
    this.hooks.setBusy(true);
    this.updateButtons();
    const recorder = ui.record.checked && !ui.recordRow.hidden ? this.recorder() : null;
    try {
      await this.client.resetVideo();
      const { frames, skipped } = await eachFrame(video, async ({ index, time }) => {
        const frame = await this.grab();
        // Labelling takes its time: sharp edges where they are on (prompted by the frame before).
        const result = await this.segmentFrame(frame, { sharp: Boolean(this.hooks.sharp?.()) });
        this.hooks.show(frame, result);
        recorder?.frame();
        this.run = { smooth: Number(ui.smooth.value), width: result.width, height: result.height, labels: result.labels.map((l) => l.label) };
        const labels = greyPng(result.labelMap, result.width, result.height);
        const objects = greyPng(result.instances ?? new Uint16Array(result.width * result.height), result.width, result.height, { depth: 16 });
        this.frames.push({
          labels: await labels, objects: await objects,
          record: { frame: index + 1, file: frameName(index + 1), time, reset: result.reset, labels: result.labels, unlabelled: result.unlabelled, objects: result.objects },
        });
        ui.progress.max = Math.max(1, video.duration);
        ui.progress.value = time;
        this.showTime();
        this.say(`Labelling: frame ${index + 1}, ${seconds(time)} of ${seconds(video.duration)}…`);
        this.hooks.status(`Labelling the video: frame ${index + 1}…`);
      }, { signal: stop.signal });
      if (recorder) this.overlay = await recorder.finish();
      const missed = skipped ? ` ${skipped} frames went by too fast to be labelled.` : '';
      const end = stop.signal.aborted ? `Stopped after ${frames} frames` : `Labelled all ${frames} frames`;
      this.say(`${end}.${missed} Download the label PNGs${this.overlay ? ' or the overlay video' : ''}.`);
      this.hooks.status(`${end} of the video.`);
    } catch (e) {
      recorder?.cancel();
      this.say(`Labelling stopped: ${e.message}`);
      this.hooks.status(`Error: ${e.message}`);
    } finally {
      this.labelling = null;
      this.hooks.setBusy(false);
      this.updateButtons();
    }
  }

  // The canvas recorded frame by frame: `frame()` after each is drawn adds it to the recording
  // (once: a recorder paused between frames drops the frames asked for after it resumes, so it
  // runs throughout, and the recording goes at the pace the frames were labelled), `finish()`
  // gives the WebM.
  recorder() {
    const stream = this.ui.canvas.captureStream(0);
    const [track] = stream.getVideoTracks();
    const mimeType = WEBM.find((t) => MediaRecorder.isTypeSupported(t)) ?? '';
    const recorder = new MediaRecorder(stream, { mimeType, videoBitsPerSecond: 8e6 });
    const chunks = [];
    recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    recorder.start();
    return {
      frame: () => track.requestFrame(),
      finish: async () => {
        // The last frame's request is taken with the next paint.
        await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 100)));
        return new Promise((resolve) => {
          recorder.onstop = () => resolve(chunks.length ? new Blob(chunks, { type: recorder.mimeType || 'video/webm' }) : null);
          recorder.stop();
          track.stop();
        });
      },
      cancel: () => { if (recorder.state !== 'inactive') recorder.stop(); track.stop(); },
    };
  }

  /** The label PNGs as one zip, in `wordmask segment --video`'s layout. */
  async downloadLabels() {
    const files = {};
    for (const { labels, objects, record } of this.frames) {
      files[record.file] = new Uint8Array(await labels.arrayBuffer());
      files[`objects/${record.file}`] = new Uint8Array(await objects.arrayBuffer());
    }
    const records = this.frames.map((f) => f.record);
    const ids = new Set(records.flatMap((r) => r.objects?.map((o) => o.id) ?? []));
    const summary = {
      video: this.file?.name ?? 'video', frames: records.length, smooth: this.run.smooth, width: this.run.width, height: this.run.height,
      labels: this.run.labels, scene_cuts: records.filter((r) => r.reset === 'cut').length, objects: ids.size, per_frame: records,
    };
    files['video.json'] = new TextEncoder().encode(JSON.stringify(summary, null, 1));
    const name = `${this.stem}-labels.zip`;
    this.hooks.save(new Blob([zipSync(files, { level: 0 })], { type: 'application/zip' }), name);
    this.say(`Downloaded ${name}: ${records.length} label PNGs (000001.png…), the objects' ids (objects/) and video.json.`);
  }
}
