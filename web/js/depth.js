// The order book panel: a SyncedBook (./book.js) fed by depth@M and the REST snapshot, drawn as the best
// LEVELS bids and asks with sizes, cumulative totals and a spread line. Each row carries the price and
// quantity exactly as shown in data-price and data-quantity; rows are in best-first order in the DOM for
// both sides (the asks list is drawn bottom-up by CSS, so the best ask sits next to the spread).

import { get } from './api.js';
import { SyncedBook } from './book.js';
import { decimalsOf, formatUnits, percentChange, ratio, subtract } from './decimal.js';
import { ensureRows, schedule, setAttr, setText } from './frame.js';

export const LEVELS = 15;
const SNAPSHOT_LIMIT = 1000;
const RETRY_MS = 1000;

function makeRow() {
  const row = document.createElement('li');
  row.className = 'level';
  for (const name of ['price', 'size', 'total']) {
    const cell = document.createElement('span');
    cell.className = name;
    row.appendChild(cell);
  }
  return row;
}

export class DepthView {
  /**
   * @param {{bids: HTMLElement, asks: HTMLElement, spread: HTMLElement, panel: HTMLElement}} elements
   * @param {{onState: function(), onPick: function(string), onError: function(string)}} handlers
   */
  constructor(elements, handlers) {
    this.elements = elements;
    this.handlers = handlers;
    this.book = new SyncedBook();
    this.symbol = null;
    this.generation = 0;
    this.resyncs = 0;
    this.retryTimer = null;
    for (const list of [elements.bids, elements.asks]) {
      list.addEventListener('click', (event) => {
        const row = event.target.closest('li.level');
        if (row !== null && row.dataset.price) this.handlers.onPick(row.dataset.price);
      });
    }
  }

  get synced() {
    return this.book.synced;
  }

  /** Show `symbol` from now on: empty, buffering diffs until load(). */
  reset(symbol) {
    this.symbol = symbol;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.book.restart();
    this.changed();
  }

  /** The stream dropped: keep showing the last book (marked stale) but trust nothing until load(). */
  pause() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.book.synced = false;
    this.book.buffer = [];
    this.changed();
  }

  /** Fetch the snapshot and apply what was buffered (the subscription is confirmed). */
  async load() {
    this.generation += 1;
    const generation = this.generation;
    clearTimeout(this.retryTimer);
    // Keep what is drawn until the snapshot replaces it; only the diffs from now on count.
    this.book.synced = false;
    this.book.buffer = [];
    let snapshot;
    try {
      snapshot = await get('/api/v1/depth', { symbol: this.symbol, limit: SNAPSHOT_LIMIT });
    } catch (error) {
      if (generation !== this.generation) return;
      this.handlers.onError(`Order book: ${error.message}`);
      this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
      return;
    }
    if (generation !== this.generation) return;
    if (this.book.onSnapshot(snapshot) === 'gap') {
      this.resync();
      return;
    }
    this.changed();
  }

  /** A gap in the diffs: the copy is wrong; start again from a fresh snapshot. */
  resync() {
    this.resyncs += 1;
    this.load();
    this.changed();
  }

  onDiff(data) {
    if (data.s !== this.symbol) return;
    const result = this.book.onDiff(data);
    if (result === 'gap') this.resync();
    else if (result === 'applied') schedule(this);
  }

  changed() {
    this.handlers.onState();
    schedule(this);
  }

  render() {
    const { bids, asks, spread, panel } = this.elements;
    panel.classList.toggle('stale', !this.book.synced);
    const bidLevels = this.book.bids.top(LEVELS);
    const askLevels = this.book.asks.top(LEVELS);
    let grandTotal = 0n;
    for (const levels of [bidLevels, askLevels]) {
      let total = 0n;
      for (const level of levels) total += level[2];
      if (total > grandTotal) grandTotal = total;
    }
    this.renderSide(bids, bidLevels, grandTotal);
    this.renderSide(asks, askLevels, grandTotal);
    if (bidLevels.length > 0 && askLevels.length > 0) {
      const [bestBid] = bidLevels[0];
      const [bestAsk] = askLevels[0];
      const difference = subtract(bestAsk, bestBid, Math.max(decimalsOf(bestAsk), decimalsOf(bestBid)));
      setText(spread, `Spread ${difference} (${percentChange(bestAsk, bestBid)}%)`);
    } else {
      setText(spread, bidLevels.length + askLevels.length === 0 ? 'No orders in the book' : 'Spread –');
    }
  }

  renderSide(list, levels, grandTotal) {
    const rows = ensureRows(list, levels.length, makeRow);
    let total = 0n;
    for (let index = 0; index < levels.length; index += 1) {
      const [price, quantity, units] = levels[index];
      total += units;
      const row = rows[index];
      setAttr(row, 'data-price', price);
      setAttr(row, 'data-quantity', quantity);
      setText(row.children[0], price);
      setText(row.children[1], quantity);
      setText(row.children[2], formatUnits(total, decimalsOf(quantity)));
      row.style.setProperty('--depth', `${(ratio(total, grandTotal) * 100).toFixed(1)}%`);
    }
  }
}
