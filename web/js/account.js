// The signed-in user's balances, open orders and fills: REST snapshots, then live from the user streams
// (balance@<user>, orders@<user>). Both are reloaded whenever the streams are (re)subscribed.
//
// Merging a snapshot with the stream, without sequence numbers to line them up:
// - an order that ended (filled, canceled, expired, rejected) is remembered and never shown again, even if
//   a snapshot taken before it ended arrives later; `filled` only grows;
// - balances carry absolute values: a snapshot during which balance events arrived may be older than
//   them, so it is fetched again (a few times at most) until one arrives with no event during it.
// Fills are the user's trades since the page opened (there is no REST list of them), newest first, bounded.

import { isNewerId, parseUnits } from './decimal.js';
import { clock, ensureRows, schedule, setAttr, setText } from './frame.js';

const ENDED = new Set(['FILLED', 'CANCELED', 'EXPIRED', 'REJECTED']);
const MAX_ENDED_REMEMBERED = 5000;
const MAX_FILLS = 100;
const MAX_ORDER_ROWS = 200;
const MAX_SNAPSHOT_TRIES = 3;
const RETRY_MS = 1000;

function larger(a, b) {
  if (a === undefined || a === null) return b;
  if (b === undefined || b === null) return a;
  return parseUnits(a) >= parseUnits(b) ? a : b;
}

function makeCells(tag, count) {
  return () => {
    const row = document.createElement(tag);
    for (let index = 0; index < count; index += 1) row.appendChild(document.createElement('td'));
    return row;
  };
}

export class AccountView {
  /**
   * @param elements {balances, orders, fills: <tbody>s; message: where errors are said}
   * @param handlers {onCancel(order): Promise, onError(text)}
   */
  constructor(elements, handlers) {
    this.elements = elements;
    this.handlers = handlers;
    this.session = null;
    this.balances = new Map();
    this.orders = new Map();
    this.ended = new Set();
    this.fills = [];
    this.generation = 0;
    this.eventsDuringLoad = 0;
    this.ordersDuringLoad = null;
    this.cancelling = new Set();
    this.retryTimer = null;
    elements.orders.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-cancel]');
      if (button !== null) this.cancel(button.dataset.cancel);
    });
  }

  /** Show `session`'s account (or nothing, signed out). */
  reset(session) {
    this.session = session;
    this.balances.clear();
    this.orders.clear();
    this.ended.clear();
    this.fills = [];
    this.cancelling.clear();
    this.generation += 1;
    clearTimeout(this.retryTimer);
    schedule(this);
  }

  pause() {
    this.generation += 1;
    clearTimeout(this.retryTimer);
  }

  async load(tries = 0) {
    if (this.session === null) return;
    this.generation += 1;
    const generation = this.generation;
    const session = this.session;
    clearTimeout(this.retryTimer);
    this.eventsDuringLoad = 0;
    this.ordersDuringLoad = [];
    let balances;
    let orders;
    try {
      [balances, orders] = await Promise.all([
        session.request('GET', '/api/v1/balance'),
        session.request('GET', '/api/v1/order/open'),
      ]);
    } catch (error) {
      if (generation !== this.generation) return;
      this.handlers.onError(`Account: ${error.message}`);
      this.retryTimer = setTimeout(() => this.load(), RETRY_MS);
      return;
    }
    if (generation !== this.generation) return;
    this.orders = new Map();
    for (const row of orders) {
      this.mergeOrder({
        id: String(row.orderId),
        market: row.market,
        side: row.side,
        type: row.type,
        stopPrice: row.stopPrice,
        price: row.price,
        quantity: row.quantity,
        filled: row.filled,
        status: row.status,
      });
    }
    for (const update of this.ordersDuringLoad) this.mergeOrder(update);
    this.ordersDuringLoad = null;
    this.balances = new Map(Object.entries(balances).map(([asset, value]) => [asset, value]));
    schedule(this);
    if (this.eventsDuringLoad > 0 && tries + 1 < MAX_SNAPSHOT_TRIES) this.load(tries + 1);
  }

  mergeOrder(update) {
    if (this.ended.has(update.id)) return;
    if (ENDED.has(update.status)) {
      this.orders.delete(update.id);
      this.ended.add(update.id);
      if (this.ended.size > MAX_ENDED_REMEMBERED) this.ended.delete(this.ended.values().next().value);
      return;
    }
    const known = this.orders.get(update.id);
    const merged = { ...known };
    for (const [name, value] of Object.entries(update)) {
      if (value !== null && value !== undefined) merged[name] = value;
    }
    if (known !== undefined) {
      merged.filled = larger(known.filled, update.filled);
      if (known.status === 'PARTIALLY_FILLED' && update.status === 'NEW') merged.status = known.status;
    }
    this.orders.set(update.id, merged);
  }

  /** An `order` or `fill` message from orders@<user>. */
  onOrderStream(data) {
    if (data.e === 'fill') {
      this.fills.unshift({
        tradeId: String(data.t),
        orderId: String(data.i),
        market: data.s,
        side: data.S,
        price: data.p,
        quantity: data.q ?? data.qty ?? data.quantity,
        maker: Boolean(data.m),
        time: Number(data.T ?? data.E),
      });
      if (this.fills.length > MAX_FILLS) this.fills.length = MAX_FILLS;
      schedule(this);
      return;
    }
    if (data.e !== 'order') return;
    const update = {
      id: String(data.i),
      market: data.s,
      side: data.S,
      type: data.o,
      stopPrice: data.P,
      price: data.p,
      quantity: data.q,
      filled: data.z,
      status: data.X,
    };
    if (this.ordersDuringLoad) this.ordersDuringLoad.push(update);
    this.mergeOrder(update);
    schedule(this);
  }

  /** A `balance` message from balance@<user>: {a: asset, f: available, l: locked}. */
  onBalance(data) {
    this.eventsDuringLoad += 1;
    this.balances.set(data.a, { available: data.f, locked: data.l });
    schedule(this);
  }

  async cancel(orderId) {
    const order = this.orders.get(orderId);
    if (order === undefined || this.cancelling.has(orderId)) return;
    this.cancelling.add(orderId);
    schedule(this);
    try {
      const result = await this.handlers.onCancel(order);
      this.mergeOrder({ id: orderId, status: result.status, filled: result.executedQty });
    } catch (error) {
      this.handlers.onError(`Cancel order ${orderId}: ${error.message}`);
    } finally {
      this.cancelling.delete(orderId);
      schedule(this);
    }
  }

  /** The open orders, newest first. */
  sortedOrders() {
    return [...this.orders.values()].sort((a, b) => (isNewerId(a.id, b.id) ? -1 : isNewerId(b.id, a.id) ? 1 : 0));
  }

  render() {
    const { balances, orders, fills, note } = this.elements;
    const signedIn = this.session !== null;
    setText(note, signedIn ? '' : 'Sign in to see your balances, orders and fills.');

    const assets = [...this.balances.keys()].sort();
    const balanceRows = ensureRows(balances, assets.length, makeCells('tr', 3));
    assets.forEach((asset, index) => {
      const { available, locked } = this.balances.get(asset);
      const row = balanceRows[index];
      setAttr(row, 'data-asset', asset);
      setAttr(row, 'data-available', available);
      setAttr(row, 'data-locked', locked);
      setText(row.children[0], asset);
      setText(row.children[1], available);
      setText(row.children[2], locked);
    });

    const open = this.sortedOrders().slice(0, MAX_ORDER_ROWS);
    const orderRows = ensureRows(orders, open.length, () => {
      const row = makeCells('tr', 8)();
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'cancel';
      row.lastElementChild.appendChild(button);
      return row;
    });
    open.forEach((order, index) => {
      const row = orderRows[index];
      setAttr(row, 'data-order-id', order.id);
      setAttr(row, 'data-market', order.market ?? '');
      setAttr(row, 'data-side', order.side ?? '');
      setAttr(row, 'data-price', order.price ?? '');
      setAttr(row, 'data-quantity', order.quantity ?? '');
      setAttr(row, 'data-filled', order.filled ?? '');
      setAttr(row, 'data-status', order.status ?? '');
      setAttr(row, 'data-stop-price', order.stopPrice ?? '');
      setText(row.children[0], order.market ?? '');
      setText(row.children[1], order.side ?? '');
      setText(row.children[2], order.stopPrice ? `${order.type} (stop ${order.stopPrice})` : order.type ?? '');
      setText(row.children[3], order.price ?? 'market');
      setText(row.children[4], order.quantity ?? '');
      setText(row.children[5], order.filled ?? '');
      setText(row.children[6], order.status ?? '');
      const button = row.children[7].firstElementChild;
      const busy = this.cancelling.has(order.id);
      setAttr(button, 'data-cancel', order.id);
      setAttr(button, 'aria-label', `Cancel order ${order.id}: ${order.side} ${order.quantity} at ${order.price}`);
      setText(button, busy ? 'Cancelling…' : 'Cancel');
      button.disabled = busy;
    });

    const fillRows = ensureRows(fills, this.fills.length, makeCells('tr', 6));
    this.fills.forEach((fill, index) => {
      const row = fillRows[index];
      setAttr(row, 'data-trade-id', fill.tradeId);
      setAttr(row, 'data-order-id', fill.orderId);
      setAttr(row, 'data-side', fill.side ?? '');
      setAttr(row, 'data-price', fill.price);
      setAttr(row, 'data-quantity', fill.quantity);
      setText(row.children[0], clock(fill.time));
      setText(row.children[1], fill.market);
      setText(row.children[2], fill.side ?? '');
      setText(row.children[3], fill.price);
      setText(row.children[4], fill.quantity);
      setText(row.children[5], fill.maker ? 'maker' : 'taker');
    });
  }
}
