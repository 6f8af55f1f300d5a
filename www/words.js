// The words field and its chips beyond a few words: a long chip list folds behind one button
// (300 chips would push the image thousands of pixels down a phone), and a sample that replaces
// words the visitor typed keeps them one click away.

/** Chips shown before the rest fold away: at most this many, in at most CHIP_ROWS rows. */
export const CHIPS_SHOWN = 8;
export const CHIP_ROWS = 2;

/**
 * Fold `list`'s chips past the first CHIPS_SHOWN (or the first CHIP_ROWS rows, on a narrow
 * screen) behind `toggle` (a button with aria-expanded, which opens and closes the fold).
 * Returns the function to call after the chips change.
 */
export function foldChips(list, toggle) {
  const fold = () => {
    const chips = [...list.children];
    const long = chips.length > CHIPS_SHOWN;
    const open = toggle.getAttribute('aria-expanded') === 'true';
    chips.forEach((chip) => { chip.hidden = false; });
    if (long && !open) {
      // Where each chip wraps to, read at once (one layout), then the folded ones hidden.
      const rowTop = chips.map((chip) => chip.offsetTop);
      const last = rowTop[0] + (CHIP_ROWS - 0.5) * chips[0].offsetHeight;
      chips.forEach((chip, i) => { chip.hidden = i >= CHIPS_SHOWN || rowTop[i] > last; });
    }
    toggle.hidden = !long;
    toggle.textContent = open ? 'Show fewer words' : `Show all ${chips.length} words`;
  };
  toggle.addEventListener('click', () => {
    toggle.setAttribute('aria-expanded', String(toggle.getAttribute('aria-expanded') !== 'true'));
    fold();
  });
  addEventListener('resize', fold);
  return fold;
}

// Words the page itself puts in the field (the samples' and the field's first value) are not
// the visitor's own.
const givenWords = (field) => new Set([field.defaultValue, ...[...document.querySelectorAll('[data-sample]')].map((b) => b.dataset.labels)]
  .map((words) => words.trim()));

/**
 * Before a sample's words replace the field: words the visitor typed are kept on `back`, a
 * button that puts them back (its text shows their start). Words the page put there are not.
 */
export function keepTypedWords(field, back) {
  const typed = field.value.trim();
  if (!typed || givenWords(field).has(typed)) return;
  back.dataset.words = field.value;
  back.textContent = `Put back your words: ${typed.length > 40 ? `${typed.slice(0, 40)}…` : typed}`;
  back.hidden = false;
}

/** The kept words back in `field`; the button goes away. */
export function putBackWords(field, back) {
  field.value = back.dataset.words ?? field.value;
  back.hidden = true;
}
