// The header's 24 h statistics: last price, change, high, low and volume, from GET /ticker and then live
// from ticker@M (published after every batch with trades). A live message that arrives while the REST
// answer is on its way is newer than it, so that answer is then dropped.

import { get } from './api.js';
import { decimalsOf, percentChange, subtract } from './decimal.js';
import { schedule, setAttr, setText } from './frame.js';

/** REST {lastPrice, firstPrice, high, low, volume, trades} or stream {c, o, h, l, v, n} -> one shape. */
export function normalizeTicker(raw) {
  return {
    last: raw.lastPrice ?? raw.c ?? null,
    open: raw.firstPrice ?? raw.o ?? null,
    high: raw.high ?? raw.h ?? null,
    low: raw.low ?? raw.l ?? null,
    volume: raw.volume ?? raw.v ?? null,
    trades: Number(raw.trades ?? raw.n ?? 0),
  };
}

export class TickerView {
  constructor(element, handlers) {
    this.element = element;
    this.handlers = handlers;
    this.symbol = null;
    this.base = '';
    this.value = null;
    this.generation = 0;
    this.fields = {};
    for (const cell of element.querySelectorAll('[data-field]')) this.fields[cell.dataset.field] = cell;
  }

  reset(market) {
    this.symbol = market.symbol;
    this.base = market.base;
    this.value = null;
    this.generation += 1;
    schedule(this);
  }

  pause() {
    this.generation += 1;
  }

  async load() {
    this.generation += 1;
    const generation = this.generation;
    try {
      const raw = await get('/api/v1/ticker', { symbol: this.symbol });
      if (generation !== this.generation) return;
      this.value = normalizeTicker(raw);
      schedule(this);
    } catch (error) {
      if (generation === this.generation) this.handlers.onError(`Ticker: ${error.message}`);
    }
  }

  onTicker(data) {
    if (data.s !== this.symbol) return;
    this.generation += 1; // newer than any REST answer still on its way
    this.value = normalizeTicker(data);
    schedule(this);
  }

  render() {
    const value = this.value;
    const traded = value !== null && value.trades > 0 && value.last !== null;
    const show = (name, text) => {
      setText(this.fields[name], text);
      setAttr(this.fields[name], 'data-value', traded ? text : '');
    };
    show('last', traded ? value.last : '–');
    show('high', traded ? value.high : '–');
    show('low', traded ? value.low : '–');
    show('volume', traded ? `${value.volume} ${this.base}` : '–');
    let direction = 'flat';
    if (traded && value.open !== null) {
      const change = subtract(value.last, value.open, Math.max(decimalsOf(value.last), decimalsOf(value.open)));
      const percent = percentChange(value.last, value.open);
      const sign = change.startsWith('-') ? '' : '+';
      show('change', `${sign}${change} (${sign}${percent}%)`);
      direction = change.startsWith('-') ? 'down' : /[1-9]/.test(change) ? 'up' : 'flat';
    } else {
      show('change', '–');
    }
    setAttr(this.fields.change, 'data-direction', direction);
    document.title = traded ? `${value.last} ${this.symbol} · openbell` : `${this.symbol} · openbell`;
  }
}
