// Order entry: limit or market, buy or sell, time in force (GTC, IOC, FOK) and post-only for limits, and
// stop and take-profit orders (a stop price; a limit price for the _limit kinds) that wait until the last
// trade price reaches their stop price. The form sends what was typed as text (the server checks the tick
// and lot grid and says what is wrong); the answer, or the API's error message, is said in words next to
// the form.

const DECIMAL = /^\d+(\.\d+)?$/;
const WITH_PRICE = new Set(['limit', 'stop_loss_limit', 'take_profit_limit']);
const STOPS = new Set(['stop_loss', 'stop_loss_limit', 'take_profit', 'take_profit_limit']);

export class OrderForm {
  /** @param handlers {onSubmit(order): Promise<result>} */
  constructor(form, handlers) {
    this.form = form;
    this.handlers = handlers;
    this.market = null;
    this.enabled = false;
    this.busy = false;
    this.message = form.querySelector('.message');
    this.submit = form.querySelector('button[type=submit]');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    form.addEventListener('change', () => this.update());
    this.update();
  }

  get fields() {
    return this.form.elements;
  }

  setMarket(market) {
    this.market = market;
    this.fields.price.step = market.tickSize;
    this.fields.quantity.step = market.lotSize;
    this.update();
  }

  setEnabled(enabled) {
    this.enabled = enabled;
    if (!enabled) this.say('Sign in to place orders.', 'info');
    else if (this.message.dataset.kind === 'info') this.say('', 'info');
    this.update();
  }

  /** Set the limit price (a click on a book level). */
  pickPrice(price) {
    if (!WITH_PRICE.has(this.fields.type.value)) this.fields.type.value = 'limit';
    this.fields.price.value = price;
    this.update();
  }

  /** Show only the fields that apply to the chosen order type, and name the button after the order. */
  update() {
    const fields = this.fields;
    const type = fields.type.value;
    const priced = WITH_PRICE.has(type);
    const stop = STOPS.has(type);
    const side = fields.side.value || 'buy';
    fields.price.disabled = !priced;
    fields.price.required = priced;
    fields.stopPrice.disabled = !stop;
    fields.stopPrice.required = stop;
    fields.stopPrice.closest('label').hidden = !stop;
    fields.timeInForce.disabled = !priced;
    fields.postOnly.disabled = type !== 'limit' || fields.timeInForce.value !== 'GTC';
    if (fields.postOnly.disabled) fields.postOnly.checked = false;
    this.form.dataset.side = side;
    this.submit.disabled = !this.enabled || this.busy || this.market === null;
    const base = this.market ? this.market.base : '';
    this.submit.textContent = this.busy ? 'Sending…' : `${side === 'buy' ? 'Buy' : 'Sell'} ${base}`;
  }

  say(text, kind) {
    this.message.textContent = text;
    this.message.dataset.kind = kind;
    this.message.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  /** The order as the API takes it, or an error message for what the form can tell is wrong. */
  order() {
    const fields = this.fields;
    const order = { market: this.market.symbol, side: fields.side.value, type: fields.type.value };
    const quantity = fields.quantity.value.trim();
    if (!DECIMAL.test(quantity)) return 'Quantity must be a number such as 1.5';
    order.quantity = quantity;
    if (STOPS.has(order.type)) {
      const stopPrice = fields.stopPrice.value.trim();
      if (!DECIMAL.test(stopPrice)) return 'Stop price must be a number such as 99.50';
      order.stopPrice = stopPrice;
    }
    if (WITH_PRICE.has(order.type)) {
      const price = fields.price.value.trim();
      if (!DECIMAL.test(price)) return 'Price must be a number such as 100.25';
      order.price = price;
      order.timeInForce = fields.timeInForce.value;
      if (order.type === 'limit' && fields.postOnly.checked) order.postOnly = true;
    }
    return order;
  }

  async send() {
    if (!this.enabled || this.busy || this.market === null) return;
    const order = this.order();
    if (typeof order === 'string') {
      this.say(order, 'error');
      return;
    }
    this.busy = true;
    this.update();
    this.say('', 'info');
    try {
      const result = await this.handlers.onSubmit(order);
      this.say(describe(order, result, this.market), 'ok');
    } catch (error) {
      this.say(error.message, 'error');
    } finally {
      this.busy = false;
      this.update();
    }
  }
}

/** "Buy 2.00 TATA at 100.00: FILLED, 2.00 filled (order 12)"; "Sell 1 TATA at 95.00 once the price
 * reaches 96.00: NEW (order 13)". */
export function describe(order, result, market) {
  const side = order.side === 'buy' ? 'Buy' : 'Sell';
  let where = WITH_PRICE.has(order.type) ? ` at ${order.price}` : ' at market';
  if (STOPS.has(order.type)) where += ` once the price reaches ${order.stopPrice}`;
  const executed = result.executedQty ?? result.executedQuantity;
  const filled = executed && /[1-9]/.test(executed) ? `, ${executed} filled` : '';
  return `${side} ${order.quantity} ${market.base}${where}: ${result.status}${filled} (order ${result.orderId})`;
}
