// Exact arithmetic on the API's decimal strings, with BigInt: prices, quantities and balances are never
// floats here either. A value is held as an integer count of 10^-SCALE units; text is parsed exactly and
// formatted back with the number of decimals the API used for that kind of value.
// Floats appear only where a value is drawn (chart coordinates, bar widths), never where it is shown as text.

export const SCALE = 18;
const ONE = 10n ** BigInt(SCALE);

/** The value of a decimal string such as "-12.340" in units of 10^-SCALE; throws on anything else. */
export function parseUnits(text) {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text));
  if (match === null) throw new Error(`not a decimal number: ${text}`);
  const [, sign, whole, fraction = ''] = match;
  if (fraction.length > SCALE) throw new Error(`too many decimals: ${text}`);
  const units = BigInt(whole) * ONE + BigInt(fraction.padEnd(SCALE, '0') || '0');
  return sign === '-' ? -units : units;
}

/** How many decimals a decimal string has ("1.50" -> 2, "3" -> 0). */
export function decimalsOf(text) {
  const dot = String(text).indexOf('.');
  return dot < 0 ? 0 : String(text).length - dot - 1;
}

/** `units` as text with exactly `decimals` places, truncated toward zero. */
export function formatUnits(units, decimals) {
  const negative = units < 0n;
  const magnitude = negative ? -units : units;
  const whole = magnitude / ONE;
  let text = whole.toString();
  if (decimals > 0) {
    const fraction = (magnitude % ONE).toString().padStart(SCALE, '0').slice(0, decimals);
    text += '.' + fraction;
  }
  return (negative && /[1-9]/.test(text) ? '-' : '') + text;
}

/** a - b for two decimal strings, with `decimals` places. */
export function subtract(a, b, decimals) {
  return formatUnits(parseUnits(a) - parseUnits(b), decimals);
}

/** (a - b) / b as a percentage with two decimals, rounded half away from zero; "" when b is zero. */
export function percentChange(a, b) {
  const base = parseUnits(b);
  if (base === 0n) return '';
  const change = parseUnits(a) - base;
  const scaled = (change < 0n ? -change : change) * 10000n;
  let hundredths = scaled / base;
  if ((scaled % base) * 2n >= base) hundredths += 1n;
  const text = `${hundredths / 100n}.${(hundredths % 100n).toString().padStart(2, '0')}`;
  return change < 0n && hundredths > 0n ? `-${text}` : text;
}

/** The share a / b (both units) as a number in [0, 1], for drawing only. */
export function ratio(a, b) {
  if (b <= 0n) return 0;
  return Number((a * 10000n) / b) / 10000;
}

/** A decimal string as a float, for drawing only (chart coordinates). */
export function toNumber(text) {
  return Number(text);
}

/** Ids are numbers today and strings later (the API's conventions): a sort key for either. */
export function idKey(id) {
  const text = String(id);
  return /^\d+$/.test(text) ? BigInt(text) : null;
}

/** Whether id a is newer (greater) than id b; ids that are not numeric never compare newer. */
export function isNewerId(a, b) {
  const ka = idKey(a);
  const kb = idKey(b);
  return ka !== null && kb !== null && ka > kb;
}

/** Milliseconds since the epoch from a time in seconds or in ms (the API is moving to ms everywhere). */
export function toMillis(time) {
  const value = Number(time);
  return value >= 1e11 ? value : value * 1000;
}
