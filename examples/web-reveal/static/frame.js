// The reveal component's page, framed by the issuer's page from another
// origin so that the host page's scripts cannot read what it shows. It
// tells the host only its state, never card data.
import { bindDevice, boundDevice, reveal, revealPIN, RevealError, useSession } from '/cardvault-reveal.js';

// The host page puts the session's ticket in the fragment, which no
// request carries; it leaves the address bar at once.
useSession(new URLSearchParams(location.hash.slice(1)).get('ticket') || '');
history.replaceState(null, '', location.pathname + location.search);

const params = new URLSearchParams(location.search);
const card = params.get('card') || '';
const hideAfter = Math.min(300, Math.max(1, Math.trunc(Number(params.get('hide'))) || 30));
const host = params.get('host') || '';
const $ = (id) => document.getElementById(id);

let hideTimer = 0;
let shownPAN = null; // kept only while shown, for the copy button
let shown = false; // whether card details or the PIN are on the page
let copied = false; // whether this page put the number on the clipboard

// tell posts the component's state to the host page, if the host named
// is the one that framed it.
function tell(state, extra = {}) {
  const framedBy = location.ancestorOrigins && location.ancestorOrigins[0];
  if (window.parent !== window && host && framedBy === host) {
    window.parent.postMessage({ state, ...extra }, host);
  }
}

function message(text) {
  $('message').textContent = text;
}

function element(tag, className, text, id) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  if (id) e.id = id;
  return e;
}

function field(label, value, id) {
  const box = element('div');
  box.append(element('span', 'label', label), element('span', 'value', value, id));
  return box;
}

const groupPAN = (pan) => pan.replace(/(\d{4})(?=\d)/g, '$1 ');

// expiry shows the last day of the expiry month as MM/YY.
const expiry = (date) => `${date.slice(5, 7)}/${date.slice(2, 4)}`;

function masked() {
  return element('div', 'masked', '•••• •••• •••• ••••');
}

function setBound(bound) {
  $('bind').hidden = bound;
  $('show').hidden = !bound;
  $('show-pin').hidden = !bound;
  $('hide').hidden = true;
}

// showing puts content on the card face and starts the hide timer; the
// host page hears the state.
function showing(content, state) {
  shown = true;
  $('details').replaceChildren(...content);
  $('show').hidden = true;
  $('show-pin').hidden = true;
  $('hide').hidden = false;
  message(`Hides after ${hideAfter} s.`);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hide, hideAfter * 1000);
  tell(state, { hidesAfterSeconds: hideAfter });
}

// showPIN shows the card's PIN like the details, and hides it with them.
function showPIN(pin) {
  const box = element('div', 'pan');
  box.append(element('span', 'label', 'PIN'), element('span', '', pin, 'pin'));
  showing([box], 'pin-shown');
}

function show(d) {
  shownPAN = d.pan;
  const pan = element('div', 'pan');
  const copy = element('button', '', 'Copy number', 'copy');
  copy.type = 'button';
  copy.addEventListener('click', () => {
    navigator.clipboard.writeText(shownPAN || '').then(
      () => { copied = true; message('Card number copied. It leaves the clipboard when the details hide.'); },
      () => message('This page may not copy.'),
    );
  });
  pan.append(element('span', '', groupPAN(d.pan), 'pan'), copy);
  const row = element('div', 'row');
  row.append(field('Expires', expiry(d.expiresAt), 'expiry'), field('CVV', d.cvc, 'cvv'), field('Name', d.name, 'name'));
  showing([pan, row], 'revealed');
}

// hide removes the details from the DOM and drops the last reference
// this page holds to them.
function hide() {
  clearTimeout(hideTimer);
  shown = false;
  shownPAN = null;
  if (copied) {
    // The number leaves the clipboard with the details, if nothing else
    // was copied since (best effort: the page may have lost focus).
    copied = false;
    navigator.clipboard.writeText('').catch(() => {});
  }
  $('details').replaceChildren(masked());
  setBound(true);
  message('');
  tell('hidden');
}

// fail says, in the cardholder's words, what went wrong while doing what
// ("setting up this browser" or "showing the card"), and tells the page
// the code and status.
function fail(doing, err) {
  const code = err instanceof RevealError ? err.code : 'failed';
  const status = err instanceof RevealError && err.status ? err.status : 0;
  let text = `Something went wrong while ${doing} (${code}${status ? ' ' + status : ''}). Try again later.`;
  if (doing !== 'setting up this browser' && status === 404) {
    text = 'This card cannot be shown here: it is not yours, or it no longer exists.';
  } else if (status === 429) {
    text = 'This card has been shown too often for now. Try again later.';
  }
  message(text);
  tell('error', { code, status });
}

$('bind').addEventListener('click', async () => {
  try {
    await bindDevice();
    setBound(true);
    message('This browser can now show your card details.');
    tell('bound');
  } catch (err) {
    fail('setting up this browser', err);
  }
});

$('show').addEventListener('click', async () => {
  $('show').disabled = true;
  try {
    show(await reveal(card));
  } catch (err) {
    fail('showing the card', err);
  } finally {
    $('show').disabled = false;
  }
});

$('show-pin').addEventListener('click', async () => {
  $('show-pin').disabled = true;
  try {
    showPIN(await revealPIN(card));
  } catch (err) {
    fail('showing the PIN', err);
  } finally {
    $('show-pin').disabled = false;
  }
});

$('hide').addEventListener('click', hide);

// A page the cardholder leaves hides what it showed.
document.addEventListener('visibilitychange', () => {
  if (document.hidden && shown) hide();
});

(async () => {
  $('details').replaceChildren(masked());
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(card)) {
    message('No card named.');
    return;
  }
  const device = await boundDevice().catch(() => null);
  setBound(device !== null);
  tell(device ? 'bound' : 'not-bound');
})();
