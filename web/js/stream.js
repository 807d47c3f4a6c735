// One WebSocket to the stream service, kept open: it subscribes to the streams its listeners want and, when
// the connection drops, reconnects with a growing delay (0.5 s doubling to 10 s) and subscribes again.
// Every (re)connection is a gap in every stream, so listeners are told (`onSubscribed`) once the server
// confirmed the subscription, and reload their REST snapshots then.
//
// Protocol: {"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[...],"id":N} -> {"result":null,"id":N} or
// {"error":{"code","message"},"id":N}; data arrives as {"stream": name, "data": {...}}.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const REPLY_TIMEOUT_MS = 10000;

export function isUserStream(name) {
  return name.startsWith('orders@') || name.startsWith('balance@');
}

export class Stream {
  /**
   * @param {object} handlers
   *   onMessage(stream, data); onSubscribed(streams) after a SUBSCRIBE is confirmed, onRefused(streams)
   *   after one is refused;
   *   onStatus(state, detail) with state "connecting" | "open" | "disconnected"; onError(message).
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.urlOf = null;
    this.opening = 0;
    this.socket = null;
    this.wanted = new Set();
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.delay = FIRST_DELAY_MS;
    this.retryTimer = null;
    this.reconnects = 0;
  }

  /**
   * Connect (closing any connection there is) to the URL `urlOf()` resolves to; it is asked again before
   * each reconnection (a user stream's listen key may have to be renewed).
   */
  connect(urlOf) {
    this.urlOf = urlOf;
    this.clearRetry();
    this.drop();
    this.open();
  }

  async open() {
    this.opening += 1;
    const opening = this.opening;
    this.handlers.onStatus('connecting', '');
    let socket;
    try {
      const url = await this.urlOf();
      if (opening !== this.opening) return;
      socket = new WebSocket(url);
    } catch (error) {
      if (opening !== this.opening) return;
      this.handlers.onError(`Cannot open the stream connection: ${error.message}`);
      this.scheduleRetry('not connected');
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.delay = FIRST_DELAY_MS;
      this.handlers.onStatus('open', '');
      // Market and user streams in separate requests: a refused user stream (a SUBSCRIBE that fails
      // changes nothing) must not cost the market streams.
      const wanted = [...this.wanted];
      for (const group of [wanted.filter((n) => !isUserStream(n)), wanted.filter(isUserStream)]) {
        if (group.length > 0) this.request('SUBSCRIBE', group).catch(() => {});
      }
    };
    socket.onmessage = (event) => {
      if (socket === this.socket) this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.failPending('the connection closed');
      const reason = event.reason ? `: ${event.reason}` : '';
      this.scheduleRetry(`closed (${event.code}${reason})`);
    };
    // An error is always followed by close; the close says what happened.
    socket.onerror = () => {};
  }

  /** Close the connection without reconnecting (a new connect() opens another). */
  drop() {
    this.opening += 1;
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      socket.close(1000, 'client going away');
    }
    this.failPending('the connection was replaced');
  }

  scheduleRetry(why = '') {
    this.clearRetry();
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    this.handlers.onStatus('disconnected', `${why ? why + '; ' : ''}reconnecting in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.reconnects += 1;
      this.open();
    }, delay);
  }

  clearRetry() {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Start listening to `streams`; resolves once the server confirmed (now or after the next connect). */
  subscribe(streams) {
    const fresh = streams.filter((name) => !this.wanted.has(name));
    for (const name of fresh) this.wanted.add(name);
    if (fresh.length === 0 || !this.isOpen) return Promise.resolve(false);
    return this.request('SUBSCRIBE', fresh).then(() => true, () => false);
  }

  unsubscribe(streams) {
    const known = streams.filter((name) => this.wanted.delete(name));
    if (known.length > 0 && this.isOpen) this.request('UNSUBSCRIBE', known).catch(() => {});
  }

  request(method, params) {
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no answer to ${method}`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, method, params });
      this.socket.send(JSON.stringify({ method, params, id }));
    });
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      this.handlers.onError('the stream sent something that is not JSON');
      return;
    }
    if (typeof message.stream === 'string') {
      this.handlers.onMessage(message.stream, message.data);
      return;
    }
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) return;
    this.pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.error) {
      this.handlers.onError(`${waiting.method} refused: ${message.error.message}`);
      if (waiting.method === 'SUBSCRIBE') this.handlers.onRefused(waiting.params);
      waiting.reject(new Error(message.error.message));
      return;
    }
    if (waiting.method === 'SUBSCRIBE') {
      // Streams unsubscribed while the request was on its way are not announced.
      this.handlers.onSubscribed(waiting.params.filter((name) => this.wanted.has(name)));
    }
    waiting.resolve(message.result);
  }

  failPending(why) {
    for (const waiting of this.pending.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error(why));
    }
    this.pending.clear();
  }
}
