// Which of the files a visitor picked make up a checkpoint, chosen by name and role, so that a
// whole folder can be picked: the config (`config.json`), the weights (`model.safetensors`,
// else `pytorch_model.bin`, else the one other weights-like file) and the preprocessor
// (`preprocessor_config.json`, where there is one). Everything else is left out and named:
// pictures beside an Open-Vocabulary SAM conversion, `train_state.json` and
// `optimizer.safetensors` beside a trained Fusioner head, a `README.md`. client.js chooses
// (only the chosen files are read) and worker.js reads the roles by the same rule.

const CONFIG = 'config.json';
const PREPROCESSOR = 'preprocessor_config.json';
// The weights file names the hub uses, in the order a folder URL is tried (worker.js).
const WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];
// int8 weights beside them (`wordmask convert --dtype q8 --beside`), taken first where asked for.
export const Q8_WEIGHTS = 'model.q8.safetensors';

/** The weights file names in the order they are taken: with `q8`, the int8 ones first. */
export function weightsOrder(q8) {
  return q8 ? [Q8_WEIGHTS, ...WEIGHTS] : WEIGHTS;
}
// Files that look like weights but are not the model's: a trainer's state, as Fusioner's
// `wordmask train fusioner` and Hugging Face's Trainer write it.
const TRAINING_STATE = /^(optimizer|scheduler|rng_state|training_args)[._]/;
const WEIGHTS_LIKE = /\.(safetensors|bin|pth|pt)$/;

/**
 * `files`: objects with a `name` (File or {name, bytes}). Gives `{config, weights,
 * preprocessor?, ignored}` (the chosen objects, and the names of the others); throws an Error
 * saying what is missing ('model-not-found' its `code`) or ambiguous ('invalid-input'), and
 * what to pick. With `q8`, `model.q8.safetensors` is taken before `model.safetensors` where
 * both are there (without, the full weights are).
 */
export function chooseModelFiles(files, { q8 = false } = {}) {
  const named = (name) => files.find((f) => f.name === name);
  const names = files.map((f) => f.name);
  const config = named(CONFIG);
  const candidates = files.filter((f) => WEIGHTS_LIKE.test(f.name) && !TRAINING_STATE.test(f.name));
  const weights = weightsOrder(q8).map(named).find(Boolean) ?? (candidates.length === 1 ? candidates[0] : undefined);
  const list = (some) => some.map((n) => `"${n}"`).join(', ');
  // `code` as the model worker's failures have it (client.js's ModelError).
  const fail = (message, code) => Object.assign(new Error(message), { code });
  if (!config) {
    throw fail(`no config.json among the chosen files (${list(names)}): choose the checkpoint's config.json and its weights `
      + '(a released SegCLIP or Open-Vocabulary SAM checkpoint is converted into such a folder first)', 'model-not-found');
  }
  if (!weights && candidates.length > 1) {
    throw fail(`more than one file could be the weights (${list(candidates.map((f) => f.name))}): `
      + 'choose config.json with only one of them, or name it model.safetensors', 'invalid-input');
  }
  if (!weights) {
    throw fail(`no weights among the chosen files (${list(names)}): choose model.safetensors or pytorch_model.bin with config.json`, 'model-not-found');
  }
  const preprocessor = named(PREPROCESSOR);
  const used = new Set([config, weights, preprocessor]);
  return { config, weights, preprocessor, ignored: files.filter((f) => !used.has(f)).map((f) => f.name) };
}
