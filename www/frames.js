// A video file's frames, one by one: opening a file in a <video> (with an error that says what
// to do when the browser cannot decode it) and stepping through every frame in order, none
// dropped. Shared by the page's video files (video.js) and <word-mask>'s segmentVideo().
//
//   const video = await openVideo(file);                        // a File, a Blob or a URL
//   const { frames, skipped } = await eachFrame(video, async ({ index, time }) => {
//     ...the video is paused on frame `index` (at `time` seconds): draw or grab it...
//   }, { signal });
//
// Stepping: the video plays (at half speed) until its next frame is presented
// (requestVideoFrameCallback), and pauses there while the frame is handled; no seek per frame,
// which would decode from the last key frame each time. A frame presented while the one before
// was still being handled (the metadata's presentedFrames counts it) is gone back to by seeking.

/** The frame `video` shows, as the page takes an image: `{bitmap, width, height, rgba}`. */
export async function grabFrame(video) {
  const bitmap = await createImageBitmap(video);
  const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  return { bitmap, width: bitmap.width, height: bitmap.height, rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data };
}

const MEDIA_ERRORS = {
  1: 'it stopped loading',
  2: 'a network error stopped it',
  3: 'its video stream could not be decoded',
  4: 'its format or codec is not one this browser plays',
};

/** The error of a video the browser cannot play, saying what to do about it. */
export function videoError(video, name = 'the video') {
  const why = MEDIA_ERRORS[video.error?.code] ?? 'it could not be read';
  return new Error(`${name} cannot be played here: ${why}. MP4 (H.264) and WebM (VP8, VP9) play in every browser; `
    + '`ffmpeg -i IN -pix_fmt yuv420p OUT.mp4` converts a video to one');
}

// Resolves on the first of `types` (after `start()`), rejects on the video's error or after `ms`.
function when(video, types, start = () => {}, ms = 30_000) {
  const names = [types].flat();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`the video gave no ${names.join(' or ')} event in ${ms / 1000} s`)); }, ms);
    const ok = () => { off(); resolve(); };
    const failed = () => { off(); reject(videoError(video)); };
    const off = () => {
      clearTimeout(timer);
      for (const name of names) video.removeEventListener(name, ok);
      video.removeEventListener('error', failed);
    };
    for (const name of names) video.addEventListener(name, ok);
    video.addEventListener('error', failed);
    start();
  });
}

/**
 * `source` (a File, a Blob or a URL) in `video` (default: a new <video>), its first frame
 * loaded, paused at the start; rejects with an error that names the file and says how to
 * convert it when the browser cannot decode it, or when it has no picture. A stream without a
 * duration (what MediaRecorder writes) gets one, so that it can be sought.
 */
export async function openVideo(source, video = document.createElement('video')) {
  const name = typeof source === 'string' ? source : source.name ?? 'the video';
  if (video.src.startsWith('blob:')) URL.revokeObjectURL(video.src);
  Object.assign(video, { muted: true, playsInline: true, preload: 'auto' });
  video.srcObject = null;
  try {
    await when(video, 'loadeddata', () => { video.src = typeof source === 'string' ? source : URL.createObjectURL(source); });
  } catch (e) {
    throw video.error ? videoError(video, name) : e;
  }
  if (!video.videoWidth || !video.videoHeight) throw new Error(`${name} has no picture (only sound?)`);
  if (!Number.isFinite(video.duration)) {
    // Seeking far past the end makes the browser read the whole stream and learn its length.
    await when(video, ['seeked', 'durationchange'], () => { video.currentTime = Number.MAX_SAFE_INTEGER; });
    await when(video, 'seeked', () => { video.currentTime = 0; });
  }
  return video;
}

// The video sought to `time` and the frame shown there: `{time, presented}` (its media time
// and the count of frames presented so far, null when the browser presented no new frame).
async function seekTo(video, time) {
  let frame = null;
  const handle = video.requestVideoFrameCallback((now, meta) => { frame = { time: meta.mediaTime, presented: meta.presentedFrames }; });
  await when(video, 'seeked', () => { video.currentTime = time; });
  // The new frame's callback comes with the next paint after the seek.
  for (let k = 0; k < 10 && !frame; k++) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!frame) video.cancelVideoFrameCallback(handle);
  return frame ?? { time: video.currentTime, presented: null };
}

// The video played until its next frame is presented, and paused on it: `{time, presented}`,
// or null at the end.
function playToNext(video) {
  if (video.ended) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const finish = (value, error) => {
      clearTimeout(timer);
      video.removeEventListener('ended', ended);
      video.removeEventListener('error', failed);
      if (error) reject(error); else resolve(value);
    };
    const handle = video.requestVideoFrameCallback((now, meta) => {
      video.pause();
      finish({ time: meta.mediaTime, presented: meta.presentedFrames });
    });
    const ended = () => { video.cancelVideoFrameCallback(handle); finish(null); };
    const failed = () => { video.cancelVideoFrameCallback(handle); finish(null, videoError(video)); };
    const timer = setTimeout(() => { video.pause(); failed(); }, 30_000);
    video.addEventListener('ended', ended);
    video.addEventListener('error', failed);
    video.play().catch((e) => { video.cancelVideoFrameCallback(handle); finish(null, e); });
  });
}

/**
 * Every frame of `video` from its start, in order: `onFrame({index, time})` is awaited with the
 * video paused on that frame. `signal` stops after the frame in hand; `rate`: the playback
 * rate between frames (lower leaves more time before the next frame is due). Resolves with
 * `{frames, skipped}`: the frames handed over, and those that went by and could not be gone
 * back to.
 */
export async function eachFrame(video, onFrame, { signal, rate = 0.5 } = {}) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) {
    throw new Error('this browser cannot step through a video frame by frame (it lacks requestVideoFrameCallback); Chrome, Edge and Safari can');
  }
  video.pause();
  const playbackRate = video.playbackRate;
  video.playbackRate = rate;
  let frames = 0;
  let skipped = 0;
  try {
    let frame = await seekTo(video, 0);
    while (frame && !signal?.aborted) {
      await onFrame({ index: frames++, time: frame.time });
      if (signal?.aborted) break;
      let next = await playToNext(video);
      const between = next && frame.presented != null && next.presented != null ? next.presented - frame.presented - 1 : 0;
      if (between > 0 && next.time > frame.time) {
        // Frames went by: back to the first of them (frames evenly spaced in between), or on
        // from the one shown when the seek finds no frame there.
        const back = await seekTo(video, frame.time + (next.time - frame.time) / (between + 1) + 1e-4);
        if (back.time > frame.time + 1e-6 && back.time < next.time - 1e-6) {
          next = back;
        } else {
          skipped += between;
          next = await seekTo(video, next.time + 1e-4);
        }
      }
      frame = next;
    }
  } finally {
    video.playbackRate = playbackRate;
    video.pause();
  }
  return { frames, skipped };
}
