// Rendering coalesced per animation frame: a view that changed asks to be drawn, and every view that
// asked is drawn once in the next frame, however many messages changed it in between. Messages only
// update state (cheap, bounded); the DOM is touched at most once per view per frame, and not at all while
// the tab is hidden (browsers pause animation frames there) or nothing changes (no timer runs when idle).

const dirty = new Set();
let requested = false;

/** Draw `view` (an object with a render() method) in the next animation frame. */
export function schedule(view) {
  dirty.add(view);
  if (!requested) {
    requested = true;
    requestAnimationFrame(drawAll);
  }
}

function drawAll() {
  requested = false;
  const views = [...dirty];
  dirty.clear();
  for (const view of views) {
    try {
      view.render();
    } catch (error) {
      // One view's bug must not stop the others from drawing; report it where developers look.
      reportError(error);
    }
  }
}

/** Keep `count` children of `parent` made by `make()`, reusing those already there (no churn per frame). */
export function ensureRows(parent, count, make) {
  while (parent.children.length < count) parent.appendChild(make());
  while (parent.children.length > count) parent.lastElementChild.remove();
  return parent.children;
}

/** Set an element's text only when it differs (no layout work for unchanged cells). */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** Set an attribute only when it differs. */
export function setAttr(element, name, value) {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/** A time in ms as HH:MM:SS in the viewer's time zone. */
export function clock(ms) {
  const date = new Date(ms);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}
