/**
 * The live dashboard: sign-in, the stream (through qrevents.js), REST snapshots, rendering.
 *
 * Everything shown comes from DashboardState; the stream's events and the REST snapshots
 * only feed it. Actions (create, cancel, release) call the API and then wait for the event
 * that reports their effect, so the page shows what the server did, not what it hoped for.
 */

import { QrEventsClient, DURABLE_TYPES, STATES } from '../qrevents.js';
import { formatDateTime, formatMoney, formatTime, parseAmount } from './format.js';
import { DashboardState, LIST_SIZE } from './state.js';

const STORAGE_KEY = 'qrevents.session';
const TOAST_MS = 6000;
const MAX_TOASTS = 3;
const RESYNC_RETRY_MS = 2000;
const PAYMENT_PAGES = 5; // held payments are looked for among the newest 1000

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

/** The signed-in session: `{token, kind}` (one per tab, in sessionStorage). */
let session = null;
let client = null;
let state = new DashboardState();
let syncGeneration = 0;
const imageUrls = new Map();

class ApiFailure extends Error {
  constructor(message, status, fields) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

/** One REST call with the session's credential; a 401 ends the session. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(new URL(path, API_ROOT), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const envelope = await response.json().catch(() => null);
  if (response.status === 401) {
    endSession(envelope?.error?.code || 'invalid_credentials');
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
    startSession({ token: envelope.data.accessToken, kind: 'jwt' });
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

function startSession(newSession) {
  session = newSession;
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  state = new DashboardState();
  state.beginSync(); // nothing to show until the first snapshot
  $('signin').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = false;
  $('signin-message').textContent = '';
  render();

  // The stream cookie: the browser's own EventSource reconnects through restarts.
  client = new QrEventsClient({
    credential: session.token,
    baseUrl: API_ROOT.href,
    transport: 'cookie',
  });
  client.on('state', renderConnection);
  client.on('heartbeat', (data) => {
    const time = $('last-heartbeat');
    time.dateTime = data.timestamp;
    time.textContent = formatTime(data.timestamp);
  });
  client.on('resync', () => resync());
  client.on('signed_out', ({ reason }) => endSession(reason));
  for (const type of DURABLE_TYPES) {
    client.on(type, (data, meta) => {
      const effects = state.apply(type, data, meta.id);
      render();
      announce(effects.notifications);
    });
  }
  client.start();
}

/** Forget the credential and everything shown; `reason` says why, when it was not asked for. */
function endSession(reason) {
  if (!session) return;
  session = null;
  syncGeneration += 1;
  sessionStorage.removeItem(STORAGE_KEY);
  const ending = client;
  client = null;
  if (ending && ending.state !== STATES.SIGNED_OUT) ending.close();
  renderConnection(STATES.SIGNED_OUT);
  for (const url of imageUrls.values()) URL.revokeObjectURL(url);
  imageUrls.clear();
  state = new DashboardState();
  for (const id of ['qr-list', 'payment-feed', 'held-list']) $(id).replaceChildren();
  delete $('qr-form').dataset.currencySet; // the next account may keep another currency
  showSignIn(reason ? SIGNED_OUT_MESSAGES[reason] || SIGNED_OUT_MESSAGES.invalid_credentials : '');
}

function showSignIn(message) {
  $('dashboard').hidden = true;
  $('sign-out').hidden = true;
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
  if (form.dueDate.value) body.dueDate = form.dueDate.value;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const qr = await api('qr', { method: 'POST', body });
    showFormMessage(message, `QR ${qr.qrId} creado.`, false);
    form.amount.value = '';
    form.description.value = '';
    form.dueDate.value = '';
  } catch (error) {
    if (error.status !== 401) showFormMessage(message, describeFailure(error), true);
  } finally {
    button.disabled = false;
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
  // The bank's PNG, large enough for a phone to scan off the screen; a click enlarges it.
  image.width = 240;
  image.height = 240;
  image.alt = `Código QR ${qr.qrId}`;
  image.title = 'Ampliar';
  image.addEventListener('click', () => enlargeQrImage(image));
  loadQrImage(image, qr.qrId);
  const side = element('div', 'row-side');
  const status = element('span', 'status');
  const cancel = element('button', 'secondary cancel', 'Cancelar');
  cancel.type = 'button';
  cancel.addEventListener('click', () =>
    act(cancel, `qr/${qr.qrId}/cancel`, 'No se pudo cancelar'),
  );
  side.append(status, cancel);
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

function enlargeQrImage(image) {
  if (!image.src) return;
  const dialog = $('qr-zoom');
  const large = dialog.querySelector('img');
  large.src = image.src;
  large.alt = image.alt;
  dialog.showModal();
}

function setUpQrZoom() {
  const dialog = $('qr-zoom');
  // Any click (on the picture, the button or the backdrop) closes it.
  dialog.addEventListener('click', () => dialog.close());
}

function paymentSummary(payment) {
  const when = formatTime(payment.paymentDate);
  return `${payment.senderName} · QR ${payment.qrId} · ${when}`;
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
  }
}

function toast(text, kind) {
  const region = $('toasts');
  const note = element('div', `toast ${kind}`.trim(), text);
  region.append(note);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  setTimeout(() => note.remove(), TOAST_MS);
}

// --- start -----------------------------------------------------------------------------

$('login-form').addEventListener('submit', signInWithPassword);
$('apikey-form').addEventListener('submit', signInWithApiKey);
$('qr-form').addEventListener('submit', createQr);
$('sign-out').addEventListener('click', () => endSession(null));
setUpQrZoom();
window.addEventListener('online', () => client?.reconnectNow());

// For a developer's console (and the browser tests): the live client and state.
window.qreventsDashboard = {
  get client() {
    return client;
  },
  get state() {
    return state;
  },
};

const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
if (saved?.token) startSession(saved);
