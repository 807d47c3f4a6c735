// The trades tape: the market's last MAX_TRADES trades, newest first, from REST and then live from
// trade@M. Trades that arrive while the REST page is loading are kept and merged by trade id, so none is
// shown twice or lost. Each row carries data-price, data-quantity, data-side (the taker's: a buy lifted
// an ask) and data-trade-id.

import { get } from './api.js';
import { idKey, isNewerId } from './decimal.js';
import { clock, ensureRows, schedule, setAttr, setText } from './frame.js';

export const MAX_TRADES = 50;
const RETRY_MS = 1000;

/** A trade from REST ({id, price, quantity, timestamp, isBuyerMaker}) or from trade@M ({t, p, q, T, m}). */
export function normalizeTrade(raw) {
  return {
    id: String(raw.id ?? raw.t ?? raw.tradeId),
    price: raw.price ?? raw.p,
    quantity: raw.quantity ?? raw.q ?? raw.qty,
    time: Number(raw.timestamp ?? raw.T ?? raw.time ?? raw.E),
    side: (raw.isBuyerMaker ?? raw.m) ? 'sell' : 'buy',
  };
}

function makeRow() {
  const row = document.createElement('li');
  row.className = 'trade';
  for (const name of ['price', 'size', 'time']) {
    const cell = document.createElement('span');
    cell.className = name;
    row.appendChild(cell);
  }
  return row;
}

export class TradesView {
  constructor(list, handlers) {
    this.list = list;
    this.handlers = handlers;
    this.symbol = null;
    this.trades = [];
    this.pending = null; // trades from the stream while the REST page loads; null when loaded
    this.generation = 0;
    this.retryTimer = null;
  }

  reset(symbol) {
    this.symbol = symbol;
    this.trades = [];
    this.pending = [];
    this.generation += 1;
    clearTimeout(this.retryTimer);
    schedule(this);
  }

  pause() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.pending = [];
  }

  async load() {
    this.generation += 1;
    const generation = this.generation;
    clearTimeout(this.retryTimer);
    if (this.pending === null) this.pending = [];
    let rows;
    try {
      rows = await get('/api/v1/trades', { symbol: this.symbol, limit: MAX_TRADES });
    } catch (error) {
      if (generation !== this.generation) return;
      this.handlers.onError(`Trades: ${error.message}`);
      this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
      return;
    }
    if (generation !== this.generation) return;
    this.trades = rows.map(normalizeTrade);
    const live = this.pending;
    this.pending = null;
    for (const trade of live) this.add(trade);
    schedule(this);
  }

  onTrade(data) {
    if (data.s !== this.symbol) return;
    const trade = normalizeTrade(data);
    if (this.pending !== null) {
      this.pending.push(trade);
      if (this.pending.length > MAX_TRADES) this.pending.shift();
      return;
    }
    this.add(trade);
    schedule(this);
  }

  add(trade) {
    const newest = this.trades[0];
    if (newest !== undefined) {
      // Ids grow with time: a numeric id not newer than the newest shown is shown (or older than the page).
      const comparable = idKey(trade.id) !== null && idKey(newest.id) !== null;
      if (comparable ? !isNewerId(trade.id, newest.id) : this.trades.some((known) => known.id === trade.id)) return;
    }
    this.trades.unshift(trade);
    if (this.trades.length > MAX_TRADES) this.trades.length = MAX_TRADES;
  }

  /** The newest trade shown, or undefined. */
  get last() {
    return this.trades[0];
  }

  render() {
    const rows = ensureRows(this.list, this.trades.length, makeRow);
    for (let index = 0; index < this.trades.length; index += 1) {
      const trade = this.trades[index];
      const row = rows[index];
      setAttr(row, 'data-price', trade.price);
      setAttr(row, 'data-quantity', trade.quantity);
      setAttr(row, 'data-side', trade.side);
      setAttr(row, 'data-trade-id', trade.id);
      setAttr(row, 'aria-label', `${trade.side} ${trade.quantity} at ${trade.price}`);
      setText(row.children[0], trade.price);
      setText(row.children[1], trade.quantity);
      setText(row.children[2], clock(trade.time));
    }
  }
}
