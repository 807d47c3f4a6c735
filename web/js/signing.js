// Signed requests as the accounts contract defines them (Binance's scheme): header X-MBX-APIKEY; query
// parameters timestamp (ms) and recvWindow; signature = lowercase hex HMAC-SHA256(secret, totalParams),
// where totalParams is the raw query string followed by the raw body, and `signature` is appended last to
// the query string (so removing it gives back exactly what was signed).

export const RECV_WINDOW_MS = 5000;
const encoder = new TextEncoder();

/** Lowercase hex HMAC-SHA256 of `message` under `secret` (WebCrypto: needs https or localhost). */
export async function hmacSha256Hex(secret, message) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error('Signing needs a secure page: open it over https or on localhost');
  }
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(message)));
  return Array.from(signature, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * The parts of a signed request: {rawQuery, rawBody, headers}, with `params` (an object) in the query and
 * `body` (an object or null) as JSON.
 */
export async function signRequest(apiKey, secret, params, body, now = Date.now()) {
  const query = new URLSearchParams(params);
  query.set('timestamp', String(now));
  query.set('recvWindow', String(RECV_WINDOW_MS));
  const unsigned = query.toString();
  const rawBody = body === null || body === undefined ? null : JSON.stringify(body);
  const signature = await hmacSha256Hex(secret, unsigned + (rawBody ?? ''));
  return { rawQuery: `${unsigned}&signature=${signature}`, rawBody, headers: { 'X-MBX-APIKEY': apiKey } };
}
