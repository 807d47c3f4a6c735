// The candlestick chart with volume (TradingView lightweight-charts, vendored): history from GET /klines,
// the current candle live from kline_<interval>@M. The newest candle is also written on the chart element
// as data-time (ms), data-open, data-high, data-low, data-close and data-volume, and in the legend above
// it, as the API's decimal strings. Prices become floats only for drawing.

import {
  CandlestickSeries,
  ColorType,
  createChart,
  HistogramSeries,
} from '../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs';
import { get } from './api.js';
import { decimalsOf, toMillis, toNumber } from './decimal.js';
import { schedule, setAttr, setText } from './frame.js';

export const INTERVALS = ['1m', '5m', '15m', '1h', '4h', '1d'];
const UP = '#26a69a';
const DOWN = '#ef5350';
const RETRY_MS = 1000;
const MAX_PENDING = 16;

/** A candle from REST ({start, open, high, low, close, volume}) or from kline@M ({k: {t, o, h, l, c, v}}). */
export function normalizeCandle(raw) {
  return {
    time: toMillis(raw.start ?? raw.t ?? raw.openTime),
    open: raw.open ?? raw.o,
    high: raw.high ?? raw.h,
    low: raw.low ?? raw.l,
    close: raw.close ?? raw.c,
    volume: raw.volume ?? raw.v,
    trades: Number(raw.trades ?? raw.n ?? 0),
  };
}

function drawn(candle) {
  const time = Math.floor(candle.time / 1000);
  const up = toNumber(candle.close) >= toNumber(candle.open);
  return [
    { time, open: toNumber(candle.open), high: toNumber(candle.high), low: toNumber(candle.low), close: toNumber(candle.close) },
    { time, value: toNumber(candle.volume), color: up ? `${UP}80` : `${DOWN}80` },
  ];
}

export class ChartView {
  constructor(container, legend, handlers) {
    this.container = container;
    this.legend = legend;
    this.handlers = handlers;
    this.symbol = null;
    this.interval = '1m';
    this.generation = 0;
    this.loaded = false;
    this.pending = []; // live candles not drawn yet (or not loaded yet)
    this.lastTime = null; // ms of the newest candle drawn
    this.times = new Set(); // ms of every candle drawn
    this.newest = null;
    this.retryTimer = null;
    const styles = getComputedStyle(document.documentElement);
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: styles.getPropertyValue('--panel').trim() || '#131722' },
        textColor: styles.getPropertyValue('--muted').trim() || '#b2b5be',
        attributionLogo: false, // its logo needs an inline <style>; the footer carries the notice and link instead
      },
      grid: { vertLines: { color: '#2a2e3955' }, horzLines: { color: '#2a2e3955' } },
      timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 4, barSpacing: 10 },
      rightPriceScale: { scaleMargins: { top: 0.1, bottom: 0.25 } },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    this.volume = this.chart.addSeries(HistogramSeries, { priceFormat: { type: 'volume' }, priceScaleId: '' });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  }

  /** Show `market` at `interval` from now on: empty until load(). */
  reset(market, interval) {
    this.symbol = market.symbol;
    this.interval = interval;
    const precision = decimalsOf(market.tickSize);
    this.candles.applyOptions({ priceFormat: { type: 'price', precision, minMove: toNumber(market.tickSize) } });
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.loaded = false;
    this.pending = [];
    this.clear();
  }

  clear() {
    this.candles.setData([]);
    this.volume.setData([]);
    this.lastTime = null;
    this.times.clear();
    this.newest = null;
    schedule(this);
  }

  pause() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.loaded = false;
    this.pending = [];
  }

  get stream() {
    return `kline_${this.interval}@${this.symbol}`;
  }

  async load() {
    this.generation += 1;
    const generation = this.generation;
    clearTimeout(this.retryTimer);
    this.loaded = false;
    this.pending = []; // only candles sent from now on can be newer than the answer
    let rows;
    try {
      rows = await get('/api/v1/klines', { symbol: this.symbol, interval: this.interval });
    } catch (error) {
      if (generation !== this.generation) return;
      this.handlers.onError(`Chart: ${error.message}`);
      this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
      return;
    }
    if (generation !== this.generation) return;
    const candles = rows.map(normalizeCandle).sort((a, b) => a.time - b.time);
    const bars = candles.map(drawn);
    this.candles.setData(bars.map((pair) => pair[0]));
    this.volume.setData(bars.map((pair) => pair[1]));
    this.times = new Set(candles.map((candle) => candle.time));
    this.lastTime = candles.length > 0 ? candles[candles.length - 1].time : null;
    this.newest = candles.length > 0 ? candles[candles.length - 1] : null;
    this.loaded = true;
    schedule(this);
  }

  onKline(data) {
    if (data.s !== this.symbol || !data.k || data.k.i !== this.interval) return;
    this.pending.push(normalizeCandle(data.k));
    if (this.pending.length > MAX_PENDING) this.pending.shift();
    if (this.loaded) schedule(this);
  }

  render() {
    if (this.loaded) {
      // Several updates of the same candle in one frame: only the last of each is drawn.
      const latest = new Map();
      for (const candle of this.pending) latest.set(candle.time, candle);
      this.pending = [];
      for (const candle of [...latest.values()].sort((a, b) => a.time - b.time)) this.draw(candle);
    }
    const newest = this.newest;
    const fields = ['open', 'high', 'low', 'close', 'volume'];
    setAttr(this.container, 'data-time', newest ? String(newest.time) : '');
    for (const name of fields) setAttr(this.container, `data-${name}`, newest ? newest[name] : '');
    setText(
      this.legend,
      newest
        ? `${this.symbol} ${this.interval}  O ${newest.open}  H ${newest.high}  L ${newest.low}  C ${newest.close}  V ${newest.volume}`
        : `${this.symbol ?? ''} ${this.interval}  no trades yet`,
    );
  }

  draw(candle) {
    const [bar, volume] = drawn(candle);
    if (candle.time === this.lastTime && candle.trades < this.newest.trades) return; // older than what is drawn
    if (this.lastTime === null || candle.time >= this.lastTime) {
      this.candles.update(bar);
      this.volume.update(volume);
      this.lastTime = candle.time;
      this.times.add(candle.time);
      this.newest = candle;
    } else if (this.times.has(candle.time)) {
      // The previous candle, marked closed after the next began: correct it in place.
      this.candles.update(bar, true);
      this.volume.update(volume, true);
    }
  }
}
