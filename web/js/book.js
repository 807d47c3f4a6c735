// A local copy of one market's order book, kept equal to the server's by the rule every client of a
// diff stream follows (no DOM here):
//   1. subscribe to depth@M and buffer its diffs;
//   2. fetch the REST snapshot, whose lastUpdateId is L;
//   3. drop buffered diffs with u <= L; apply the rest in order; from then on each diff must start right
//      after the previous one (U == last u + 1, or overlap it: U <= last + 1 <= u). A diff that starts later
//      is a gap: updates were lost, the copy is wrong, and the book starts again at step 2.
// Invariants: levels hold no zero quantity; each side's keys are sorted best first; `lastUpdateId` is the
// `u` of the last diff applied (or the snapshot's L).

import { parseUnits } from './decimal.js';

const MAX_BUFFERED = 5000;

/** One side of the book: price -> quantity, sorted best first, as the API's decimal strings. */
export class Ladder {
  constructor(descending) {
    this.descending = descending;
    this.quantities = new Map(); // price units (as a string key) -> [price text, quantity text, quantity units]
    this.sorted = []; // price units (BigInt), best first
  }

  clear() {
    this.quantities.clear();
    this.sorted = [];
  }

  get size() {
    return this.sorted.length;
  }

  /** Set one level; quantity "0" (or any zero) removes it. */
  set(price, quantity) {
    const units = parseUnits(price);
    const key = units.toString();
    const quantityUnits = parseUnits(quantity);
    const known = this.quantities.has(key);
    if (quantityUnits === 0n) {
      if (known) {
        this.quantities.delete(key);
        this.sorted.splice(this.indexOf(units), 1);
      }
      return;
    }
    this.quantities.set(key, [price, quantity, quantityUnits]);
    if (!known) this.sorted.splice(this.indexOf(units), 0, units);
  }

  /** Where `units` is or would go in `sorted` (binary search). */
  indexOf(units) {
    let low = 0;
    let high = this.sorted.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      const value = this.sorted[middle];
      const before = this.descending ? value > units : value < units;
      if (before) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** The best `count` levels: [price text, quantity text, quantity units], best first. */
  top(count) {
    const out = [];
    const end = Math.min(count, this.sorted.length);
    for (let index = 0; index < end; index += 1) {
      out.push(this.quantities.get(this.sorted[index].toString()));
    }
    return out;
  }
}

export class SyncedBook {
  constructor() {
    this.bids = new Ladder(true);
    this.asks = new Ladder(false);
    this.lastUpdateId = null;
    this.synced = false;
    this.buffer = [];
  }

  /** Forget everything and buffer diffs until the next snapshot (step 1). */
  restart() {
    this.bids.clear();
    this.asks.clear();
    this.lastUpdateId = null;
    this.synced = false;
    this.buffer = [];
  }

  /**
   * One diff from depth@M: {U, u, b: [[price, qty]], a: [...]}.
   * Returns "applied", "buffered", "stale" (already in the copy) or "gap" (the caller must resync).
   */
  onDiff(diff) {
    if (!this.synced) {
      if (this.buffer.length >= MAX_BUFFERED) return 'gap';
      this.buffer.push(diff);
      return 'buffered';
    }
    return this.apply(diff);
  }

  /** The REST snapshot {bids, asks, lastUpdateId} (step 2), then the buffered diffs (step 3). */
  onSnapshot(snapshot) {
    this.bids.clear();
    this.asks.clear();
    for (const [price, quantity] of snapshot.bids) this.bids.set(price, quantity);
    for (const [price, quantity] of snapshot.asks) this.asks.set(price, quantity);
    this.lastUpdateId = Number(snapshot.lastUpdateId);
    this.synced = true;
    const buffered = this.buffer;
    this.buffer = [];
    for (const diff of buffered) {
      if (this.apply(diff) === 'gap') return 'gap';
    }
    return 'applied';
  }

  apply(diff) {
    const first = Number(diff.U);
    const last = Number(diff.u);
    if (last <= this.lastUpdateId) return 'stale';
    if (first > this.lastUpdateId + 1) {
      this.synced = false;
      return 'gap';
    }
    for (const [price, quantity] of diff.b) this.bids.set(price, quantity);
    for (const [price, quantity] of diff.a) this.asks.set(price, quantity);
    this.lastUpdateId = last;
    return 'applied';
  }
}
