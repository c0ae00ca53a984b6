/**
 * How the dashboard writes money and times for a Bolivian merchant.
 *
 * Money: `Bs 1.100,50` (BOB) and `$us 1.100,50` (USD), the symbols Bolivian banks print, with
 * the dot grouping thousands and the comma before centavos. Written by hand rather than with
 * Intl: whether four-digit numbers are grouped depends on the locale ("es" writes 1100,50,
 * "es-BO" 1.100,50) and on the ICU build, while a balance must read the same everywhere.
 * Times: the merchant's clock, America/La_Paz.
 */

const SYMBOLS = { BOB: 'Bs', USD: '$us' };
const TIME_ZONE = 'America/La_Paz';

/** Centavos of an API amount (a JSON number with at most two decimals). */
export function toCents(amount) {
  return Math.round(Number(amount) * 100);
}

/** `Bs 1.100,50` for 110050 centavos of BOB. */
export function formatMoney(cents, currency = 'BOB') {
  const symbol = SYMBOLS[currency] || currency;
  const sign = cents < 0 ? '-' : '';
  const digits = String(Math.abs(Math.trunc(cents))).padStart(3, '0');
  const whole = digits.slice(0, -2).replace(/\B(?=(\d{3})+(?!\d))/g, '.');
  return `${sign}${symbol} ${whole},${digits.slice(-2)}`;
}

const timeFormat = new Intl.DateTimeFormat('es-BO', {
  timeZone: TIME_ZONE,
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
});

const dateTimeFormat = new Intl.DateTimeFormat('es-BO', {
  timeZone: TIME_ZONE,
  day: '2-digit',
  month: '2-digit',
  year: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  hourCycle: 'h23',
});

/** `14:05:09` in La Paz, for an ISO timestamp. */
export function formatTime(iso) {
  return iso ? timeFormat.format(new Date(iso)) : '';
}

/** `15/01/2026 14:05` in La Paz, for an ISO timestamp. */
export function formatDateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : '';
}

/**
 * The JSON number for an amount typed by a person (`1100,5`, `1.100,50`, `1.100`, `1100.50`),
 * or null when it is not a positive amount with at most two decimals.
 */
export function parseAmount(text) {
  let value = String(text).trim().replace(/\s/g, '');
  // A comma is the decimal mark; dots before it, or in groups of three alone, group thousands.
  if (value.includes(',') || /^\d{1,3}(\.\d{3})+$/.test(value)) {
    value = value.replace(/\./g, '').replace(',', '.');
  }
  if (!/^\d{1,8}(\.\d{1,2})?$/.test(value)) return null;
  const amount = Number(value);
  return amount > 0 ? amount : null;
}

/**
 * `2026-01-15` for a date typed as `15/01/2026` (also `15-01-2026`, `15.01.2026`, `5/1/2026`),
 * or null when it is no real calendar date. Parsed here rather than by `<input type=date>`,
 * which shows the browser's locale (mm/dd/yyyy on an English one), not the merchant's.
 */
export function parseDate(text) {
  const match = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(String(text).trim());
  if (!match) return null;
  const [day, month, year] = match.slice(1).map(Number);
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCFullYear() !== year || probe.getUTCMonth() !== month - 1) return null;
  if (probe.getUTCDate() !== day || year < 2000) return null;
  return `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
}

/** `15/01/2026` for `2026-01-15` (a calendar date, no time zone involved). */
export function formatDate(isoDate) {
  const match = /^(\d{4})-(\d{2})-(\d{2})/.exec(isoDate || '');
  return match ? `${match[3]}/${match[2]}/${match[1]}` : '';
}

/** The La Paz calendar date (`2026-01-15`) of an ISO timestamp or a Date. */
export function laPazDate(moment) {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: TIME_ZONE,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).formatToParts(new Date(moment));
  const get = (type) => parts.find((part) => part.type === type).value;
  return `${get('year')}-${get('month')}-${get('day')}`;
}
