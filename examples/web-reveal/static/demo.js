// The issuer's page: it shows what the component says it is doing, and
// never sees card data (the component posts only its state).
const origin = document.body.dataset.componentOrigin;
const status = document.getElementById('status');
const frame = document.getElementById('reveal');

const words = {
  'not-bound': 'This browser is not a bound device yet.',
  bound: 'This browser is a bound device.',
  revealed: 'Card details shown.',
  'pin-shown': 'PIN shown.',
  hidden: 'Card details hidden.',
  error: 'The card details could not be shown.',
};

window.addEventListener('message', (event) => {
  if (event.origin !== origin || event.source !== frame.contentWindow) {
    return;
  }
  const { state, hidesAfterSeconds } = event.data || {};
  if (!(state in words)) {
    return;
  }
  status.dataset.state = state;
  const shownFor = { revealed: ' They hide', 'pin-shown': ' It hides' }[state];
  status.textContent = words[state] + (shownFor ? `${shownFor} after ${hidesAfterSeconds} s.` : '');
});
