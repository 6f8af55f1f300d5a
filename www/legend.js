// The legend with many words: largest share first, words that got no pixel folded behind one
// button, and a filter once the list is longer than a glance.

/** Entries listed before a filter shows (and, before there are shares, before the rest fold). */
export const LEGEND_SHOWN = 12;

// A share the legend prints as "0.0 %".
const empty = (entry) => entry.share != null && entry.share * 100 < 0.05;

export class Legend {
  /**
   * `list`: the <ul>; `find`: the filter's row (hidden while the legend is short), holding
   * `filter` (a search input); `more`: the button (aria-expanded) that unfolds what is folded.
   */
  constructor({ list, find, filter, more }) {
    Object.assign(this, { list, find, filter, more, entries: [], item: null, rest: null });
    filter.addEventListener('input', () => this.render());
    more.addEventListener('click', () => {
      more.setAttribute('aria-expanded', String(more.getAttribute('aria-expanded') !== 'true'));
      this.render();
    });
  }

  /**
   * Show `entries` ({word, text, share?, ...}), each drawn by `item(entry)` (an <li>), then
   * `rest` (text of a last line, or null). Entries with shares are sorted largest first.
   */
  show(entries, item, rest) {
    Object.assign(this, { entries, item, rest });
    this.render();
  }

  render() {
    const { entries, filter, more } = this;
    const shares = entries.some((e) => e.share != null);
    const order = entries.map((entry, i) => ({ entry, i }));
    if (shares) order.sort((a, b) => b.entry.share - a.entry.share || a.i - b.i);
    const long = entries.length > LEGEND_SHOWN;
    this.find.hidden = !long;
    const query = long ? filter.value.trim().toLowerCase() : '';
    const matches = order.map(({ entry }) => entry).filter((e) => !query || (e.word ?? e.text).toLowerCase().includes(query));
    // A filter shows every match; otherwise words with no pixels (or, before the shares, the
    // words past the first few) fold away.
    let folded = [];
    if (!query) folded = shares ? matches.filter(empty) : matches.slice(LEGEND_SHOWN);
    const open = more.getAttribute('aria-expanded') === 'true';
    const shown = open ? matches : matches.filter((e) => !folded.includes(e));
    const items = shown.map((e) => this.item(e));
    if (query && !matches.length) items.push(Object.assign(document.createElement('li'), { textContent: `No word matches “${filter.value.trim()}”.` }));
    if (this.rest) items.push(Object.assign(document.createElement('li'), { textContent: this.rest }));
    this.list.replaceChildren(...items);
    more.hidden = folded.length === 0;
    if (shares) more.textContent = open ? `Hide the ${folded.length} words with no pixels` : `Show ${folded.length} more words with no pixels (0.0 %)`;
    else more.textContent = open ? `Show only the first ${LEGEND_SHOWN} words` : `Show all ${matches.length} words`;
  }
}
