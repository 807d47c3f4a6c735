// REST calls to /api/v1. Every failure becomes an ApiError whose message is fit to show a person: the
// server's own `{"code", "message"}` when it answered, or what went wrong when it did not.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * `method` `path` (with `rawQuery`, already encoded, if any) and a JSON `rawBody` text; resolves to the
 * parsed JSON answer. `headers` are added as given.
 */
export async function call(method, path, { rawQuery = '', rawBody = null, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store' };
  if (rawBody !== null) {
    init.body = rawBody;
    init.headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(rawQuery ? `${path}?${rawQuery}` : path, init);
  } catch {
    throw new ApiError(0, null, 'Cannot reach the server: is openbell running?');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.message === 'string' ? data.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, data ? data.code : null, message);
  }
  return data;
}

/** A public GET with query parameters given as an object. */
export function get(path, query = {}) {
  return call('GET', path, { rawQuery: new URLSearchParams(query).toString() });
}
