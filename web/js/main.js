// The trading page: reads /api/v1/config and /api/v1/markets, then keeps one stream connection and the
// views on it. Every view follows one life cycle, driven from here:
//   reset(...)  a new market, interval or user: forget, show empty, wait;
//   pause()     the connection dropped: keep showing what is there (marked stale), trust none of it;
//   load()      its streams are subscribed (confirmed by the server): fetch the REST snapshot and
//               merge what the streams sent meanwhile;
//   on...(msg)  a stream message; the view schedules its own drawing for the next animation frame.

import { ChartView, INTERVALS } from './chart.js';
import { get } from './api.js';
import { DepthView } from './depth.js';
import { schedule, setAttr, setText } from './frame.js';
import { OrderForm } from './orderform.js';
import { AccountView } from './account.js';
import { DevSession, KeySession, USER_ID, keepSession, restoreSession } from './session.js';
import { isUserStream, Stream } from './stream.js';
import { TickerView } from './ticker.js';
import { TradesView } from './trades.js';

const $ = (selector) => document.querySelector(selector);
const STATUS_TEXT = {
  connecting: 'Connecting…',
  syncing: 'Syncing the order book…',
  live: 'Live',
  disconnected: 'Disconnected',
};

class App {
  constructor(config, markets) {
    this.config = config;
    this.markets = new Map(markets.map((market) => [market.symbol, market]));
    this.market = null;
    this.interval = sessionStorage.getItem('openbell.interval') ?? '1m';
    if (!INTERVALS.includes(this.interval)) this.interval = '1m';
    this.session = restoreSession(config.auth);
    this.streamState = 'connecting';
    this.streamDetail = '';
    this.shownState = 'connecting';

    const onError = (text) => this.notice(text);
    this.depth = new DepthView(
      { bids: $('[data-testid=depth-bids]'), asks: $('[data-testid=depth-asks]'), spread: $('#spread'), panel: $('#book') },
      { onState: () => schedule(this.status), onPick: (price) => this.form.pickPrice(price), onError },
    );
    this.trades = new TradesView($('[data-testid=trades]'), { onError });
    this.ticker = new TickerView($('[data-testid=ticker]'), { onError });
    this.chart = new ChartView($('[data-testid=chart]'), $('#chart-legend'), { onError });
    this.account = new AccountView(
      {
        balances: $('[data-testid=balances] tbody'),
        orders: $('[data-testid=open-orders] tbody'),
        fills: $('[data-testid=fills] tbody'),
        note: $('#account-note'),
      },
      {
        onCancel: (order) => this.session.request('DELETE', '/api/v1/order', { body: { orderId: order.id, market: order.market } }),
        onError: (text) => this.say($('#orders-message'), text, 'error'),
      },
    );
    this.form = new OrderForm($('[data-testid=order-form]'), {
      onSubmit: (order) => this.session.request('POST', '/api/v1/order', { body: order }),
    });
    this.status = { render: () => this.renderStatus() };
    this.stream = new Stream({
      onMessage: (stream, data) => this.onMessage(stream, data),
      onSubscribed: (streams) => this.onSubscribed(streams),
      // Refused user streams (an expired listen key, say): the account is still shown, from REST only.
      onRefused: (streams) => streams.some(isUserStream) && this.account.load(),
      onStatus: (state, detail) => this.onStatus(state, detail),
      onError,
    });
  }

  start() {
    this.wireControls();
    const wanted = decodeURIComponent(location.hash.slice(1));
    this.selectMarket(this.markets.has(wanted) ? wanted : this.markets.keys().next().value);
    this.showSession();
    this.connect();
  }

  wireControls() {
    const select = $('[data-testid=market-select]');
    for (const symbol of this.markets.keys()) select.add(new Option(symbol, symbol));
    select.addEventListener('change', () => this.selectMarket(select.value));
    window.addEventListener('hashchange', () => {
      const symbol = decodeURIComponent(location.hash.slice(1));
      if (this.markets.has(symbol) && symbol !== this.market.symbol) this.selectMarket(symbol);
    });
    for (const input of document.querySelectorAll('input[name=interval]')) {
      input.checked = input.value === this.interval;
      input.addEventListener('change', () => this.selectInterval(input.value));
    }
    $('#sign-in').addEventListener('submit', (event) => {
      event.preventDefault();
      this.signIn();
    });
    $('#sign-out').addEventListener('click', () => this.signOut());
    $('#deposit').addEventListener('submit', (event) => {
      event.preventDefault();
      this.deposit();
    });
    const keys = this.config.auth === 'keys';
    for (const element of document.querySelectorAll('.keys-only')) element.hidden = !keys;
    $('#deposit').hidden = keys; // deposits are open only in dev mode (an operator's call otherwise)
  }

  // ------------------------------------------------------------------ streams
  marketStreams() {
    const symbol = this.market.symbol;
    return [`depth@${symbol}`, `trade@${symbol}`, `ticker@${symbol}`, `kline_${this.interval}@${symbol}`];
  }

  connect() {
    this.stream.connect(async () => {
      const url = new URL(this.config.wsUrl, location.href);
      if (url.protocol === 'http:') url.protocol = 'ws:';
      if (url.protocol === 'https:') url.protocol = 'wss:';
      if (this.session !== null) url.search = await this.session.streamQuery();
      return url.toString();
    });
  }

  onStatus(state, detail) {
    this.streamState = state;
    this.streamDetail = detail;
    if (state !== 'open') {
      for (const view of [this.depth, this.trades, this.ticker, this.chart, this.account]) view.pause();
    }
    schedule(this.status);
  }

  onSubscribed(streams) {
    const loads = new Set();
    for (const name of streams) {
      if (isUserStream(name)) loads.add(this.account);
      else if (name.startsWith('depth@')) loads.add(this.depth);
      else if (name.startsWith('trade@')) loads.add(this.trades);
      else if (name.startsWith('ticker@')) loads.add(this.ticker);
      else if (name.startsWith('kline_')) loads.add(this.chart);
    }
    for (const view of loads) view.load();
  }

  onMessage(stream, data) {
    switch (data.e) {
      case 'depth':
        this.depth.onDiff(data);
        break;
      case 'trade':
        this.trades.onTrade(data);
        break;
      case 'kline':
        this.chart.onKline(data);
        break;
      case 'ticker':
        this.ticker.onTicker(data);
        break;
      case 'order':
      case 'fill':
        this.account.onOrderStream(data);
        break;
      case 'balance':
        this.account.onBalance(data);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ choices
  selectMarket(symbol) {
    if (this.market !== null) this.stream.unsubscribe(this.marketStreams());
    this.market = this.markets.get(symbol);
    $('[data-testid=market-select]').value = symbol;
    if (decodeURIComponent(location.hash.slice(1)) !== symbol) history.replaceState(null, '', `#${symbol}`);
    this.depth.reset(symbol);
    this.trades.reset(symbol);
    this.ticker.reset(this.market);
    this.chart.reset(this.market, this.interval);
    this.form.setMarket(this.market);
    this.stream.subscribe(this.marketStreams());
  }

  selectInterval(interval) {
    if (interval === this.interval) return;
    this.stream.unsubscribe([this.chart.stream]);
    this.interval = interval;
    sessionStorage.setItem('openbell.interval', interval);
    this.chart.reset(this.market, interval);
    this.stream.subscribe([this.chart.stream]);
  }

  // ------------------------------------------------------------------ signing in
  async signIn() {
    const fields = $('#sign-in').elements;
    const userId = fields.userId.value.trim();
    const message = $('#sign-in .message');
    if (!USER_ID.test(userId)) {
      this.say(message, 'A user id is 1-64 letters, digits, _ . or -', 'error');
      return;
    }
    let session;
    if (this.config.auth === 'keys') {
      const apiKey = fields.apiKey.value.trim();
      const secret = fields.secret.value.trim();
      if (!apiKey || !secret) {
        this.say(message, 'An API key and its secret are needed', 'error');
        return;
      }
      session = new KeySession(userId, apiKey, secret);
      try {
        await session.request('GET', '/api/v1/balance'); // a signed call: wrong keys are said now
      } catch (error) {
        this.say(message, error.message, 'error');
        return;
      }
    } else {
      session = new DevSession(userId);
    }
    fields.secret.value = '';
    this.say(message, '', 'info');
    await this.useSession(session);
  }

  async signOut() {
    await this.useSession(null);
  }

  async useSession(session) {
    const previous = this.session;
    this.session = session;
    keepSession(session); // the previous key is forgotten before anything else happens
    if (previous !== null) {
      this.stream.unsubscribe(previous.userStreams());
      await previous.end();
    }
    // A new connection, which says who it is when it opens and subscribes to the user's streams then.
    this.connect();
    this.showSession();
  }

  showSession() {
    const session = this.session;
    $('#sign-in').hidden = session !== null;
    $('#signed-in').hidden = session === null;
    setText($('#signed-in .user'), session ? session.userId : '');
    this.account.reset(session);
    this.form.setEnabled(session !== null);
    $('#deposit').querySelector('button').disabled = session === null;
    if (session !== null) this.stream.subscribe(session.userStreams());
    const assets = new Set();
    for (const market of this.markets.values()) assets.add(market.base).add(market.quote);
    const select = $('#deposit select');
    if (select.options.length === 0) for (const asset of [...assets].sort()) select.add(new Option(asset, asset));
  }

  async deposit() {
    const form = $('#deposit');
    const message = form.querySelector('.message');
    if (this.session === null) return;
    const amount = form.elements.amount.value.trim();
    const asset = form.elements.asset.value;
    const txnId = `web-${Date.now()}-${Math.floor(Math.random() * 1e9)}`;
    try {
      await this.session.request('POST', '/api/v1/onramp', { body: { asset, amount, txnId } });
      this.say(message, `Deposited ${amount} ${asset}`, 'ok');
    } catch (error) {
      this.say(message, error.message, 'error');
    }
  }

  // ------------------------------------------------------------------ words on the page
  say(element, text, kind) {
    element.textContent = text;
    element.dataset.kind = kind;
    element.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  notice(text) {
    this.say($('#notice'), text, 'error');
  }

  renderStatus() {
    const element = $('[data-testid=connection-status]');
    const state = this.streamState === 'open' ? (this.depth.synced ? 'live' : 'syncing') : this.streamState;
    let text = STATUS_TEXT[state];
    if (state === 'disconnected' && this.streamDetail) text = `${text}: ${this.streamDetail}`;
    // Trouble said while the page was not live is over once it is live again.
    if (state === 'live' && this.shownState !== 'live') this.say($('#notice'), '', 'info');
    this.shownState = state;
    setAttr(element, 'data-state', state);
    setAttr(element, 'data-resyncs', String(this.depth.resyncs));
    setAttr(element, 'data-reconnects', String(this.stream.reconnects));
    setText(element, text);
  }
}

async function main() {
  const status = $('[data-testid=connection-status]');
  for (let attempt = 0; ; attempt += 1) {
    try {
      const [config, markets] = await Promise.all([get('/api/v1/config'), get('/api/v1/markets')]);
      if (markets.length === 0) throw new Error('the exchange has no markets yet');
      new App(config, markets).start();
      return;
    } catch (error) {
      const delay = Math.min(1000 * 2 ** attempt, 10000);
      setAttr(status, 'data-state', 'disconnected');
      setText(status, `Cannot load the exchange (${error.message}); trying again in ${delay / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

main();
