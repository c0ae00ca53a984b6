/**
 * The live dashboard: sign-in, the stream (through qrevents.js), REST snapshots, rendering.
 *
 * Everything shown comes from DashboardState; the stream's events and the REST snapshots
 * only feed it. Actions (create, cancel, release) call the API and then wait for the event
 * that reports their effect, so the page shows what the server did, not what it hoped for.
 */

import { QrEventsClient, DURABLE_TYPES, STATES } from '../qrevents.js';
import { Alerts } from './alerts.js';
import { barChart } from './chart.js';
import {
  formatDate,
  formatDateTime,
  formatMoney,
  formatTime,
  parseAmount,
  parseDate,
} from './format.js';
import { DashboardState, LIST_SIZE } from './state.js';
import { PeriodSummary } from './summary.js';

const STORAGE_KEY = 'qrevents.session';
const TOAST_MS = 6000;
const MAX_TOASTS = 3;
const RESYNC_RETRY_MS = 2000;
const PAYMENT_PAGES = 5; // held payments are looked for among the newest 1000
// A password session renews its access token when this much of its life is gone (a JWT's
// exp is in whole seconds, so a "2 s" token may live just over 1 s).
const RENEW_AT = 0.4;
const RENEW_RETRY_MS = 2000;
const PAID_SHOWN_MS = 3500; // the "Pagado" confirmation, then back to the dashboard
const SUMMARY_RELOAD_MS = 800; // after the last streamed payment, the ledger's own totals
const SEARCH_LIMIT = 50;

const API_ROOT = new URL('./', window.location.href);

const STATE_LABELS = {
  [STATES.IDLE]: 'Sin conexión',
  [STATES.CONNECTING]: 'Conectando…',
  [STATES.CONNECTED]: 'Conectado',
  [STATES.RECONNECTING]: 'Reconectando…',
  [STATES.SIGNED_OUT]: 'Sesión cerrada',
  [STATES.CLOSED]: 'Sesión cerrada',
};

const SIGNED_OUT_MESSAGES = {
  key_revoked: 'La API key fue revocada. Inicie sesión de nuevo.',
  token_expired: 'La sesión expiró. Inicie sesión de nuevo.',
  session_revoked: 'La sesión se cerró en otra parte. Inicie sesión de nuevo.',
  invalid_credentials: 'Las credenciales no son válidas. Inicie sesión de nuevo.',
  missing_credentials: 'Inicie sesión para ver la cuenta.',
};

const STATUS_LABELS = {
  active: 'Activo',
  used: 'Usado',
  completed: 'Completado',
  expired: 'Vencido',
  cancelled: 'Cancelado',
};

const REVIEW_REASONS = {
  qr_used: 'El QR ya estaba usado',
  qr_completed: 'El QR ya estaba completado',
  qr_expired: 'El QR estaba vencido',
  qr_cancelled: 'El QR estaba cancelado',
  past_due_date: 'Pagado después del vencimiento',
  amount_mismatch: 'El monto no coincide con el del QR',
};

const $ = (id) => document.getElementById(id);

/**
 * The signed-in session (one per tab, in sessionStorage): `{token, kind}`, and for a
 * password sign-in (`kind: 'jwt'`) `renewAt`, when to trade the refresh cookie for the next
 * token. The refresh cookie itself is HttpOnly: no script here can read it.
 */
let session = null;
let client = null;
let state = new DashboardState();
let syncGeneration = 0;
const imageUrls = new Map();
const alerts = new Alerts({ announcer: $('announcer') });
const summary = new PeriodSummary();
let summaryPeriod = 'day';
let summaryTimer = null;
let renewTimer = null;
let renewing = null;
let renewals = 0;
let charging = null; // {qrId, opener, closeTimer}

class ApiFailure extends Error {
  constructor(message, status, fields) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

/**
 * One REST call with the session's credential. A password session whose token just expired
 * renews it and tries once more; any other 401 ends the session.
 */
async function api(path, { method = 'GET', body, raw = false, renewed = false } = {}) {
  if (!session) throw new ApiFailure('signed out', 401);
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(new URL(path, API_ROOT), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  if (raw && response.ok) return response;
  const envelope = await response.json().catch(() => null);
  if (response.status === 401) {
    const code = envelope?.error?.code || 'invalid_credentials';
    if (code === 'token_expired' && session?.kind === 'jwt' && !renewed && (await renewSession())) {
      return api(path, { method, body, raw, renewed: true });
    }
    endSession(code);
    throw new ApiFailure('signed out', 401);
  }
  if (!response.ok || !envelope?.success) {
    throw new ApiFailure(
      envelope?.message || `HTTP ${response.status}`,
      response.status,
      envelope?.error?.fields,
    );
  }
  return envelope.data;
}

// --- session --------------------------------------------------------------------------

async function signInWithPassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const response = await fetch(new URL('auth/login', API_ROOT), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: form.email.value.trim(), password: form.password.value }),
      cache: 'no-store',
    });
    const envelope = await response.json().catch(() => null);
    if (!response.ok || !envelope?.success) {
      showSignIn('Correo o contraseña incorrectos.');
      return;
    }
    form.reset();
    startSession({ token: envelope.data.accessToken, kind: 'jwt', ...renewalOf(envelope.data) });
  } catch {
    showSignIn('No se pudo contactar al servidor.');
  } finally {
    button.disabled = false;
  }
}

async function signInWithApiKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const token = form.apiKey.value.trim();
  const response = await fetch(new URL('accounts/me', API_ROOT), {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store',
  }).catch(() => null);
  if (!response?.ok) {
    showSignIn(response ? 'La API key no es válida.' : 'No se pudo contactar al servidor.');
    return;
  }
  form.reset();
  startSession({ token, kind: 'apikey' });
}

/** When to renew a token that `expiresIn` seconds from now. */
function renewalOf({ expiresIn }) {
  return { renewAt: Date.now() + expiresIn * 1000 * RENEW_AT };
}

function saveSession() {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

/**
 * Trade the refresh cookie for the next access token (once at a time: concurrent callers
 * share one request, and tabs queue behind a Web Lock, since a refresh token used twice
 * revokes the sign-in). True when renewed; a refusal ends the session.
 */
function renewSession() {
  if (renewing) return renewing;
  const run = async () => {
    if (!session || session.kind !== 'jwt') return false;
    let response;
    try {
      response = await fetch(new URL('auth/refresh', API_ROOT), {
        method: 'POST',
        cache: 'no-store',
        credentials: 'same-origin',
      });
    } catch {
      scheduleRenewal(RENEW_RETRY_MS);
      return false;
    }
    const envelope = await response.json().catch(() => null);
    if (!session) return false;
    if (response.status === 401) {
      // No cookie any more (the browser drops it at the sign-in's end) or an expired one: the
      // day is over. A refused one: revoked (signed out elsewhere, or a reuse was detected).
      const revoked = envelope?.error?.code === 'invalid_credentials';
      endSession(revoked ? 'session_revoked' : 'token_expired');
      return false;
    }
    if (!response.ok || !envelope?.success) {
      scheduleRenewal(RENEW_RETRY_MS);
      return false;
    }
    session = { ...session, token: envelope.data.accessToken, ...renewalOf(envelope.data) };
    saveSession();
    renewals += 1;
    scheduleRenewal();
    // The stream cookie follows the new token, for the browser's own reconnections.
    client?.renewStreamCookie();
    return true;
  };
  const locked = navigator.locks
    ? navigator.locks.request('qrevents-session-refresh', run)
    : run();
  renewing = locked.finally(() => {
    renewing = null;
  });
  return renewing;
}

function scheduleRenewal(delayMs) {
  clearTimeout(renewTimer);
  if (!session || session.kind !== 'jwt') return;
  const wait = delayMs ?? Math.max(0, session.renewAt - Date.now());
  renewTimer = setTimeout(renewSession, wait);
}

/** The token for the next stream connection: renewed first if it is due. */
async function currentToken() {
  if (session?.kind === 'jwt' && Date.now() >= session.renewAt) await renewSession();
  return session?.token;
}

function startSession(newSession) {
  session = newSession;
  saveSession();
  scheduleRenewal();
  state = new DashboardState();
  state.beginSync(); // nothing to show until the first snapshot
  $('signin').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = false;
  renderAlertToggles();
  $('signin-message').textContent = '';
  render();

  // The stream cookie: the browser's own EventSource reconnects through restarts.
  // A password session hands the client a function: each connection gets the newest token,
  // and a stream ended at a token's expiry resumes with the next one.
  client = new QrEventsClient({
    credential: session.kind === 'jwt' ? currentToken : session.token,
    baseUrl: API_ROOT.href,
    transport: 'cookie',
  });
  client.on('state', renderConnection);
  // The connection's time at once, then each heartbeat's: never blank while connected.
  client.on('connection', (data) => showLastBeat(data.timestamp));
  client.on('heartbeat', (data) => showLastBeat(data.timestamp));
  client.on('resync', () => resync());
  client.on('signed_out', ({ reason }) => endSession(reason));
  for (const type of DURABLE_TYPES) {
    client.on(type, (data, meta) => {
      const received = type === 'qr_payment' ? { ...data, arrivedAt: new Date().toISOString() } : data;
      const effects = state.apply(type, received, meta.id);
      render();
      if (type === 'qr_payment') {
        if (summary.applyPayment(data)) renderGlance();
        scheduleSummaryReload();
        if (charging?.qrId === data.qrId) showPaid(data);
      }
      announce(effects.notifications);
    });
  }
  client.start();
}

function showLastBeat(timestamp) {
  const time = $('last-heartbeat');
  time.dateTime = timestamp;
  time.textContent = formatTime(timestamp);
}

/** Forget the credential and everything shown; `reason` says why, when it was not asked for. */
function endSession(reason) {
  if (!session) return;
  session = null;
  syncGeneration += 1;
  clearTimeout(renewTimer);
  clearTimeout(summaryTimer);
  closeCharge();
  sessionStorage.removeItem(STORAGE_KEY);
  const ending = client;
  client = null;
  if (ending && ending.state !== STATES.SIGNED_OUT) ending.close();
  renderConnection(STATES.SIGNED_OUT);
  for (const url of imageUrls.values()) URL.revokeObjectURL(url);
  imageUrls.clear();
  state = new DashboardState();
  for (const id of ['qr-list', 'payment-feed', 'held-list', 'search-results', 'glance-chart']) {
    $(id).replaceChildren();
  }
  $('last-heartbeat').textContent = '--:--:--';
  delete $('qr-form').dataset.currencySet; // the next account may keep another currency
  showSignIn(reason ? SIGNED_OUT_MESSAGES[reason] || SIGNED_OUT_MESSAGES.invalid_credentials : '');
}

/** The sign-out button: the refresh cookie's sign-in is revoked on the server too. */
async function signOut() {
  if (session?.kind === 'jwt') {
    await fetch(new URL('auth/logout', API_ROOT), {
      method: 'POST',
      cache: 'no-store',
      credentials: 'same-origin',
    }).catch(() => null);
  }
  endSession(null);
}

function showSignIn(message) {
  $('dashboard').hidden = true;
  $('sign-out').hidden = true;
  $('notify-toggle').hidden = true;
  $('signin').hidden = false;
  $('account-name').textContent = '';
  $('signin-message').textContent = message;
}

// --- REST snapshot ---------------------------------------------------------------------

/** Reload everything over REST: at the start, and whenever the stream could not resume. */
async function resync() {
  const generation = ++syncGeneration;
  state.beginSync();
  try {
    const [account, movements, qrs, payments] = await Promise.all([
      api('accounts/me'),
      api('accounts/me/movements?limit=1'),
      api(`qr?limit=${LIST_SIZE}`),
      recentPayments(),
      loadSummary(),
    ]);
    if (generation !== syncGeneration) return;
    const effects = state.applySnapshot({
      account,
      latestMovement: movements.items[0] || null,
      qrs: qrs.items,
      payments,
    });
    render();
    announce(effects.notifications);
  } catch (error) {
    if (generation !== syncGeneration || !session) return;
    setTimeout(() => generation === syncGeneration && session && resync(), RESYNC_RETRY_MS);
  }
}

async function recentPayments() {
  const all = [];
  let cursor = null;
  for (let page = 0; page < PAYMENT_PAGES; page += 1) {
    const query = cursor ? `payments?limit=200&cursor=${cursor}` : 'payments?limit=200';
    const { items, nextCursor } = await api(query);
    all.push(...items);
    if (!nextCursor) break;
    cursor = nextCursor;
  }
  return all;
}

// --- actions ---------------------------------------------------------------------------

async function createQr(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const message = $('create-message');
  const amount = parseAmount(form.amount.value);
  if (amount === null) {
    showFormMessage(message, 'Monto no válido: use hasta dos decimales, por ejemplo 100,50.', true);
    return;
  }
  const body = {
    amount,
    currency: form.currency.value,
    description: form.description.value.trim(),
    singleUse: form.singleUse.checked,
    modifyAmount: form.modifyAmount.checked,
  };
  if (form.dueDate.value.trim()) {
    body.dueDate = parseDate(form.dueDate.value);
    if (!body.dueDate) {
      showFormMessage(message, 'Fecha de vencimiento no válida: use dd/mm/aaaa.', true);
      return;
    }
  }
  const charge = event.submitter?.name === 'charge';
  const buttons = [...form.querySelectorAll('button[type="submit"]')];
  for (const button of buttons) button.disabled = true;
  try {
    const qr = await api('qr', { method: 'POST', body });
    showFormMessage(message, `QR ${qr.qrId} creado.`, false);
    form.amount.value = '';
    form.description.value = '';
    form.dueDate.value = '';
    if (charge) openCharge(qr, event.submitter);
  } catch (error) {
    if (error.status !== 401) showFormMessage(message, describeFailure(error), true);
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

async function act(button, path, failureText) {
  button.disabled = true;
  try {
    await api(path, { method: 'POST' });
    // The row changes when the event arrives; the button stays disabled until then.
  } catch (error) {
    button.disabled = false;
    if (error.status !== 401) toast(`${failureText}: ${error.message}`, 'review');
  }
}

function describeFailure(error) {
  const fields = error.fields ? Object.entries(error.fields) : [];
  if (!fields.length) return error.message;
  return fields.map(([name, text]) => `${name}: ${text}`).join('; ');
}

function showFormMessage(element, text, isError) {
  element.textContent = text;
  element.classList.toggle('error', isError);
}

// --- rendering -------------------------------------------------------------------------

function renderConnection(connectionState) {
  $('connection').dataset.state = connectionState;
  $('connection-label').textContent = STATE_LABELS[connectionState] || connectionState;
}

function render() {
  const currency = state.account?.currency || 'BOB';
  $('account-name').textContent = state.account ? `· ${state.account.name}` : '';
  setAmount($('balance'), state.balanceCents, currency);
  setAmount($('available'), state.availableCents, currency);
  setAmount($('held-total'), state.heldCents, currency);
  if (state.account && !$('qr-form').dataset.currencySet) {
    $('qr-form').currency.value = currency;
    $('qr-form').dataset.currencySet = 'yes';
  }
  renderList($('qr-list'), state.qrs.newestFirst(), createQrRow, updateQrRow);
  renderList($('payment-feed'), state.payments.newestFirst(), createPaymentRow, updatePaymentRow);
  renderList($('held-list'), state.held.newestFirst(), createHeldRow);
}

function setAmount(element, cents, currency) {
  const text = cents === null ? '—' : formatMoney(cents, currency);
  if (element.textContent === text) return;
  const wasShown = element.textContent !== '—';
  element.textContent = text;
  element.dataset.cents = cents === null ? '' : String(cents);
  if (wasShown) {
    element.classList.remove('changed');
    void element.offsetWidth; // restart the flash animation
    element.classList.add('changed');
  }
}

/** Keyed rendering: rows are reused, reordered and removed, never rebuilt. */
function renderList(list, items, create, update = () => {}) {
  const existing = new Map([...list.children].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    let row = existing.get(item.key);
    if (row) existing.delete(item.key);
    else row = create(item);
    update(row, item);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (row !== expected) list.insertBefore(row, expected);
    previous = row;
  }
  for (const [key, row] of existing) {
    row.remove();
    if (imageUrls.has(key)) {
      URL.revokeObjectURL(imageUrls.get(key));
      imageUrls.delete(key);
    }
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function createQrRow(qr) {
  const row = element('li');
  row.dataset.key = qr.key;
  row.dataset.qrId = qr.qrId;
  const image = element('img', 'qr-image');
  // The bank's PNG; "Cobrar" shows it full screen, large enough to scan at arm's length.
  image.width = 240;
  image.height = 240;
  image.alt = `Código QR ${qr.qrId}`;
  loadQrImage(image, qr.qrId);
  const side = element('div', 'row-side');
  const status = element('span', 'status');
  const chargeButton = element('button', 'charge-button', 'Cobrar');
  chargeButton.type = 'button';
  chargeButton.setAttribute('aria-label', `Cobrar ${formatMoney(qr.amountCents, qr.currency)}: ${qr.description}`);
  chargeButton.addEventListener('click', () => openCharge(state.qrs.get(qr.key) || qr, chargeButton));
  // A click on the picture shows it full screen too (the button is the keyboard's way).
  image.addEventListener('click', () => {
    const current = state.qrs.get(qr.key) || qr;
    if (current.status === 'active') openCharge(current, chargeButton);
  });
  const cancel = element('button', 'secondary cancel', 'Cancelar');
  cancel.type = 'button';
  cancel.addEventListener('click', () =>
    act(cancel, `qr/${qr.qrId}/cancel`, 'No se pudo cancelar'),
  );
  side.append(status, chargeButton, cancel);
  row.append(
    image,
    element('span', 'row-amount', formatMoney(qr.amountCents, qr.currency)),
    element('span', 'row-detail', qr.description),
    element('span', 'row-detail', `${qr.qrId} · vence ${formatDateTime(qr.dueDate)}`),
    side,
  );
  return row;
}

function updateQrRow(row, qr) {
  const status = row.querySelector('.status');
  status.dataset.status = qr.status;
  status.textContent = STATUS_LABELS[qr.status] || qr.status;
  row.dataset.status = qr.status;
  row.querySelector('.cancel').hidden = qr.status !== 'active';
  row.querySelector('.charge-button').hidden = qr.status !== 'active';
}

async function loadQrImage(image, qrId) {
  const token = session?.token;
  try {
    const response = await fetch(new URL(`qr/${encodeURIComponent(qrId)}/image.png`, API_ROOT), {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!response.ok || session?.token !== token) return;
    const url = URL.createObjectURL(await response.blob());
    imageUrls.set(qrId, url);
    image.src = url;
  } catch {
    // the image is a convenience; the row is complete without it
  }
}

// --- charge mode ---------------------------------------------------------------------

/** Full screen: the amount, the description and the bank's QR, until it is paid or Esc. */
function openCharge(qr, opener) {
  const dialog = $('charge');
  const cents = qr.amountCents ?? Math.round(Number(qr.amount) * 100);
  charging = { qrId: qr.qrId, opener, closeTimer: null };
  dialog.dataset.state = 'waiting';
  $('charge-amount').textContent = formatMoney(cents, qr.currency);
  $('charge-description').textContent = qr.description;
  $('charge-state').textContent = 'Esperando el pago…';
  $('charge-paid').hidden = true;
  const image = $('charge-image');
  image.alt = `Código QR para pagar ${formatMoney(cents, qr.currency)}`;
  image.removeAttribute('src');
  if (imageUrls.has(qr.qrId)) image.src = imageUrls.get(qr.qrId);
  else loadQrImage(image, qr.qrId);
  if (!dialog.open) dialog.showModal();
  $('charge-close').focus();
}

function showPaid(data) {
  const dialog = $('charge');
  const amount = formatMoney(Math.round(Number(data.amount) * 100), data.currency);
  dialog.dataset.state = data.review ? 'review' : 'paid';
  $('charge-paid-detail').textContent = `${amount} de ${data.senderName}`;
  $('charge-paid').hidden = false;
  $('charge-state').textContent = data.review
    ? `Pagado: ${amount} de ${data.senderName}, retenido para revisión.`
    : `Pagado: ${amount} de ${data.senderName}.`;
  clearTimeout(charging.closeTimer);
  charging.closeTimer = setTimeout(closeCharge, PAID_SHOWN_MS);
}

function closeCharge() {
  const dialog = $('charge');
  if (dialog.open) dialog.close();
}

function setUpCharge() {
  const dialog = $('charge');
  $('charge-close').addEventListener('click', closeCharge);
  // Esc closes a modal dialog by itself; either way, focus goes back where it came from.
  dialog.addEventListener('close', () => {
    if (!charging) return;
    clearTimeout(charging.closeTimer);
    const { opener } = charging;
    charging = null;
    if (opener?.isConnected) opener.focus();
  });
}

/** The QR's description (what was sold), the payer and when the payment arrived. */
function paymentSummary(payment) {
  const description = state.qrs.get(payment.qrId)?.description || payment.description;
  const arrived = payment.arrivedAt ? ` · llegó ${formatTime(payment.arrivedAt)}` : '';
  return `${description} · ${payment.senderName}${arrived}`;
}

function createPaymentRow(payment) {
  const row = element('li');
  row.dataset.key = payment.key;
  row.dataset.transactionId = payment.transactionId;
  const side = element('span', 'row-side');
  row.append(
    element('span', 'row-amount', formatMoney(payment.amountCents, payment.currency)),
    element('span', 'row-detail', paymentSummary(payment)),
    side,
  );
  return row;
}

function updatePaymentRow(row, payment) {
  const side = row.querySelector('.row-side');
  let tag = null;
  if (payment.review && payment.released) tag = element('span', 'tag released', 'Liberado');
  else if (payment.review) tag = element('span', 'tag review', 'Retenido');
  side.replaceChildren(...(tag ? [tag] : []));
}

function createHeldRow(payment) {
  const row = element('li');
  row.dataset.key = payment.key;
  row.dataset.transactionId = payment.transactionId;
  const release = element('button', 'release', 'Liberar');
  release.type = 'button';
  release.addEventListener('click', () =>
    act(release, `payments/${payment.transactionId}/release`, 'No se pudo liberar'),
  );
  const side = element('span', 'row-side');
  side.append(release);
  row.append(
    element('span', 'row-amount', formatMoney(payment.amountCents, payment.currency)),
    element('span', 'row-detail', paymentSummary(payment)),
    element('span', 'row-detail', reviewReason(payment)),
    side,
  );
  return row;
}

function reviewReason(payment) {
  return REVIEW_REASONS[payment.reviewReason] || payment.reviewReason || '';
}

function announce(payments) {
  for (const payment of payments) {
    const amount = formatMoney(payment.amountCents, payment.currency);
    const title = payment.review ? 'Pago retenido para revisión' : 'Pago recibido';
    toast(`${title}: ${amount} de ${payment.senderName}`, payment.review ? 'review' : '');
    alerts.payment(title, `${amount} de ${payment.senderName}`);
  }
}

function toast(text, kind) {
  const region = $('toasts');
  const note = element('div', `toast ${kind}`.trim(), text);
  region.append(note);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  setTimeout(() => note.remove(), TOAST_MS);
}

// --- today at a glance -----------------------------------------------------------------

/** The server's totals of the period (one query there), replacing what the stream added. */
async function loadSummary() {
  const generation = syncGeneration;
  const data = await api(`payments/summary?period=${summaryPeriod}`);
  if (generation !== syncGeneration || data.period !== summaryPeriod) return;
  summary.replace(data);
  renderGlance();
}

function scheduleSummaryReload() {
  clearTimeout(summaryTimer);
  summaryTimer = setTimeout(() => loadSummary().catch(() => {}), SUMMARY_RELOAD_MS);
}

function renderGlance() {
  const data = summary.data;
  if (!data) return;
  const money = (cents) => formatMoney(cents, data.currency);
  const average = summary.averageCents;
  $('glance-total').textContent = money(summary.totalCents);
  $('glance-count').textContent = String(summary.count);
  $('glance-average').textContent = average === null ? '—' : money(average);
  $('glance-title').textContent = data.period === 'day' ? 'Hoy de un vistazo' : 'La semana de un vistazo';
  const span = data.period === 'day' ? formatDate(data.to) : `${formatDate(data.from)} a ${formatDate(data.to)}`;
  const perWhat = data.period === 'day' ? 'por hora' : 'por día';
  $('glance-caption').textContent = `Cobrado ${perWhat}, ${span} (hora de La Paz)`;
  const describe = (bucket) => {
    const when = data.period === 'day' ? `${bucket.start.slice(11, 16)}` : formatDate(bucket.start);
    const payments = bucket.count === 1 ? '1 pago' : `${bucket.count} pagos`;
    return `${when}: ${payments}, ${money(bucket.cents)}`;
  };
  const chart = barChart(summary.buckets, {
    period: data.period,
    describe,
    summary: `${summary.count} pagos, ${money(summary.totalCents)} cobrado ${perWhat}, ${span}`,
    width: $('glance-chart').clientWidth,
  });
  $('glance-chart').replaceChildren(chart);
}

function choosePeriod(period) {
  summaryPeriod = period;
  $('period-day').setAttribute('aria-pressed', String(period === 'day'));
  $('period-week').setAttribute('aria-pressed', String(period === 'week'));
  loadSummary().catch(() => {});
}

// --- search and export -------------------------------------------------------------------

/** The query of the search form, or null after saying what is wrong with it. */
function searchQuery() {
  const form = $('search-form');
  const message = $('search-message');
  const params = new URLSearchParams();
  const problems = [];
  for (const [name, label] of [['from', 'Desde'], ['to', 'Hasta']]) {
    const text = form[name].value.trim();
    if (!text) continue;
    const day = parseDate(text);
    if (day) params.set(name, day);
    else problems.push(`${label}: use dd/mm/aaaa`);
  }
  for (const [name, label] of [['minAmount', 'Monto mínimo'], ['maxAmount', 'Monto máximo']]) {
    const text = form[name].value.trim();
    if (!text) continue;
    const amount = parseAmount(text);
    if (amount !== null) params.set(name, amount.toFixed(2));
    else problems.push(`${label}: use un monto como 42,75`);
  }
  const payer = form.payer.value.trim();
  if (payer) params.set('payer', payer);
  if (problems.length) {
    showFormMessage(message, problems.join('; '), true);
    return null;
  }
  return params;
}

async function searchPayments(event) {
  event.preventDefault();
  const params = searchQuery();
  if (!params) return;
  params.set('limit', String(SEARCH_LIMIT));
  const message = $('search-message');
  try {
    const { items, nextCursor } = await api(`payments?${params}`);
    const found = items.map((item) => ({ ...item, amountCents: Math.round(item.amount * 100) }));
    $('search-results').replaceChildren(...found.map(createResultRow));
    const more = nextCursor ? ` (los ${SEARCH_LIMIT} más recientes; descargue el CSV para todos)` : '';
    showFormMessage(message, `${found.length} pagos encontrados${more}.`, false);
  } catch (error) {
    if (error.status !== 401) showFormMessage(message, describeFailure(error), true);
  }
}

function createResultRow(payment) {
  const row = element('li');
  row.dataset.transactionId = payment.transactionId;
  const when = `${formatDateTime(payment.paymentDate)} · llegó ${formatDateTime(payment.createdAt)}`;
  row.append(
    element('span', 'row-amount', formatMoney(payment.amountCents, payment.currency)),
    element('span', 'row-detail', `${payment.description} · ${payment.senderName}`),
    element('span', 'row-detail', when),
  );
  return row;
}

/** GET /payments.csv with the session's credential, saved as a file. */
async function exportCsv() {
  const params = searchQuery();
  if (!params) return;
  const message = $('search-message');
  try {
    const response = await api(`payments.csv?${params}`, { raw: true });
    const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await response.blob());
    const link = element('a');
    link.href = url;
    link.download = name ? name[1] : 'pagos.csv';
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    showFormMessage(message, `Descargado ${link.download}.`, false);
  } catch (error) {
    if (error.status !== 401) showFormMessage(message, describeFailure(error), true);
  }
}

// --- alerts ------------------------------------------------------------------------------

function renderAlertToggles() {
  const sound = $('sound-toggle');
  sound.setAttribute('aria-pressed', String(!alerts.muted));
  sound.textContent = alerts.muted ? 'Sonido: no' : 'Sonido: sí';
  const notify = $('notify-toggle');
  notify.hidden = !session || !alerts.canNotify || alerts.notifying;
}

// --- start -----------------------------------------------------------------------------

$('login-form').addEventListener('submit', signInWithPassword);
$('apikey-form').addEventListener('submit', signInWithApiKey);
$('qr-form').addEventListener('submit', createQr);
$('search-form').addEventListener('submit', searchPayments);
$('export-csv').addEventListener('click', exportCsv);
$('sign-out').addEventListener('click', signOut);
$('period-day').addEventListener('click', () => choosePeriod('day'));
$('period-week').addEventListener('click', () => choosePeriod('week'));
$('sound-toggle').addEventListener('click', () => {
  alerts.setMuted(!alerts.muted);
  renderAlertToggles();
});
$('notify-toggle').addEventListener('click', async () => {
  await alerts.askToNotify();
  renderAlertToggles();
});
// Browsers let a page make sound only after a gesture: the first one unlocks it.
for (const type of ['pointerdown', 'keydown']) {
  document.addEventListener(type, () => alerts.unlockAudio(), { capture: true });
}
setUpCharge();
window.addEventListener('online', () => client?.reconnectNow());
// The chart is drawn at its box's width: again when that changes (a rotated phone).
let chartWidth = 0;
new ResizeObserver(([entry]) => {
  const width = Math.round(entry.contentRect.width);
  if (width && width !== chartWidth) {
    chartWidth = width;
    renderGlance();
  }
}).observe($('glance-chart'));

// For a developer's console (and the browser tests): the live client, state and counters.
window.qreventsDashboard = {
  get client() {
    return client;
  },
  get state() {
    return state;
  },
  get summary() {
    return summary;
  },
  get alerts() {
    return alerts.counts;
  },
  get renewals() {
    return renewals;
  },
};

renderAlertToggles();
const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
if (saved?.token) startSession(saved);
