// Who is signed in, and how their requests and user streams say so. The config endpoint's `auth` picks
// the kind:
// - "dev": the server takes `user_id` from each request (the --dev mode of the accounts issue, and all
//   of openbell before it): user_id goes in the query of a GET and in the JSON body otherwise; the stream
//   connection says `?user_id=`.
// - "keys": an API key and secret; every private request is signed in the browser (./signing.js); the
//   user streams need a listen key (POST /api/v1/listenKey, kept alive by PUT every 30 minutes,
//   ended by DELETE) and the connection says `?listenKey=`.
// What a session needs is kept in sessionStorage only: it ends with the tab, and is never in localStorage.

import { call } from './api.js';
import { signRequest } from './signing.js';

const STORAGE_KEY = 'openbell.session';
const LISTEN_KEY_REFRESH_MS = 30 * 60 * 1000;
export const USER_ID = /^[A-Za-z0-9_.-]{1,64}$/;

class Session {
  constructor(userId) {
    this.userId = userId;
  }

  /** The private streams of this user. */
  userStreams() {
    return [`orders@${this.userId}`, `balance@${this.userId}`];
  }
}

export class DevSession extends Session {
  get kind() {
    return 'dev';
  }

  request(method, path, { query = {}, body = null } = {}) {
    if (method === 'GET') {
      return call(method, path, { rawQuery: new URLSearchParams({ ...query, user_id: this.userId }).toString() });
    }
    const rawQuery = new URLSearchParams(query).toString();
    return call(method, path, { rawQuery, rawBody: JSON.stringify({ ...body, user_id: this.userId }) });
  }

  async streamQuery() {
    return new URLSearchParams({ user_id: this.userId }).toString();
  }

  async end() {}

  saved() {
    return { kind: 'dev', userId: this.userId };
  }
}

export class KeySession extends Session {
  constructor(userId, apiKey, secret) {
    super(userId);
    this.apiKey = apiKey;
    this.secret = secret;
    this.listenKey = null;
    this.refreshTimer = null;
  }

  get kind() {
    return 'keys';
  }

  async request(method, path, { query = {}, body = null } = {}) {
    const signed = await signRequest(this.apiKey, this.secret, query, method === 'GET' ? null : body);
    return call(method, path, signed);
  }

  /** The stream connection's query: the listen key, extended if there is one (PUT), else a new one. */
  async streamQuery() {
    if (this.listenKey !== null) {
      try {
        await this.request('PUT', '/api/v1/listenKey', { query: { listenKey: this.listenKey } });
      } catch {
        this.listenKey = null; // expired or ended: ask for a new one
      }
    }
    if (this.listenKey === null) {
      const answer = await this.request('POST', '/api/v1/listenKey');
      this.listenKey = answer.listenKey;
      // The contract answers {"listenKey"}; if the server also says whose key it is, believe the server.
      const owner = answer.user_id ?? answer.userId;
      if (typeof owner === 'string' && USER_ID.test(owner)) this.userId = owner;
    }
    this.keepAlive();
    return new URLSearchParams({ listenKey: this.listenKey }).toString();
  }

  keepAlive() {
    clearInterval(this.refreshTimer);
    this.refreshTimer = setInterval(() => {
      if (this.listenKey !== null) {
        this.request('PUT', '/api/v1/listenKey', { query: { listenKey: this.listenKey } }).catch(() => {});
      }
    }, LISTEN_KEY_REFRESH_MS);
  }

  async end() {
    clearInterval(this.refreshTimer);
    this.refreshTimer = null;
    if (this.listenKey !== null) {
      const listenKey = this.listenKey;
      this.listenKey = null;
      await this.request('DELETE', '/api/v1/listenKey', { query: { listenKey } }).catch(() => {});
    }
  }

  saved() {
    return { kind: 'keys', userId: this.userId, apiKey: this.apiKey, secret: this.secret };
  }
}

/** The session kept in this tab for a server whose config says `auth`, or null. */
export function restoreSession(auth) {
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null');
  } catch {
    saved = null;
  }
  if (!saved || saved.kind !== auth || !USER_ID.test(saved.userId ?? '')) return null;
  if (auth === 'keys') return saved.apiKey && saved.secret ? new KeySession(saved.userId, saved.apiKey, saved.secret) : null;
  return new DevSession(saved.userId);
}

export function keepSession(session) {
  if (session === null) sessionStorage.removeItem(STORAGE_KEY);
  else sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session.saved()));
}
