// The page's keyboard routes, following the WAI-ARIA Authoring Practices: tabs that arrow keys
// move between (https://www.w3.org/WAI/ARIA/apg/patterns/tabs/), toolbars that are one tab stop
// with arrow keys inside (https://www.w3.org/WAI/ARIA/apg/patterns/toolbar/), and lists redrawn
// without losing the focused control. (The skip link to the model picker is plain HTML: a
// fragment link focuses a focusable target.)

// Both patterns are horizontal here: Left and Right step (wrapping round), Home and End jump.
const STEP = { ArrowRight: 1, ArrowLeft: -1 };

// The item that `key` reaches from item `i` of `n`, or undefined for another key.
function step(key, i, n) {
  if (key === 'Home') return 0;
  if (key === 'End') return n - 1;
  return STEP[key] === undefined ? undefined : (i + STEP[key] + n) % n;
}

/**
 * Arrow keys (and Home, End) move the focus between the tabs of `tablist` and select the tab
 * they reach (its click handler runs): automatic activation, as the pattern recommends when
 * showing a panel is instant.
 */
export function arrowTabs(tablist) {
  tablist.addEventListener('keydown', (e) => {
    const tabs = [...tablist.querySelectorAll('[role=tab]')];
    const i = tabs.indexOf(document.activeElement);
    const j = i < 0 ? undefined : step(e.key, i, tabs.length);
    if (j === undefined) return;
    e.preventDefault();
    tabs[j].focus();
    tabs[j].click();
  });
}

const controls = (element) => [...element.querySelectorAll('button, input, select')].filter((c) => !c.hidden && !c.disabled);

/**
 * `element` as a toolbar named `label`: one tab stop (the control used last, else the first);
 * Left and Right (Home, End) move between its controls.
 */
export function toolbar(element, label) {
  element.setAttribute('role', 'toolbar');
  element.setAttribute('aria-label', label);
  const roving = (current) => controls(element).forEach((c) => { c.tabIndex = c === current ? 0 : -1; });
  roving(controls(element)[0]);
  element.addEventListener('focusin', (e) => roving(e.target));
  element.addEventListener('keydown', (e) => {
    const items = controls(element);
    const i = items.indexOf(document.activeElement);
    const j = i < 0 ? undefined : step(e.key, i, items.length);
    if (j === undefined) return;
    e.preventDefault();
    items[j].focus();
  });
  return element;
}

/**
 * Runs `render()`, which replaces the items (`[data-label]`) of `list`; when a control in an
 * item had the focus, the same control of the same item (found by its `data-label`) gets it
 * back, else the first control of the item now at its place (the next one, after a removal),
 * else `fallback`. So a chip or legend action leaves the keyboard where it was.
 */
export function keepingFocus(list, render, fallback) {
  const active = document.activeElement;
  const item = list.contains(active) ? active.closest('[data-label]') : null;
  const was = item && { label: item.dataset.label, control: controls(item).indexOf(active), at: [...list.querySelectorAll('[data-label]')].indexOf(item) };
  render();
  if (!was || list.contains(document.activeElement)) return;
  const items = [...list.querySelectorAll('[data-label]')];
  const same = items.find((i) => i.dataset.label === was.label);
  const target = same
    ? controls(same)[was.control] ?? controls(same)[0]
    : controls(items[Math.min(was.at, items.length - 1)] ?? list)[0];
  (target ?? fallback)?.focus();
}
