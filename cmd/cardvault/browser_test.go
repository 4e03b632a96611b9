package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// exchange is one call the example backend made to the vault, as the
// recording proxy between them saw it.
type exchange struct {
	method, path    string
	status          int
	request, answer []byte
}

// recorder is a proxy in front of the vault that keeps every byte the
// example backend sent and received.
type recorder struct {
	*httptest.Server
	mu        sync.Mutex
	exchanges []exchange
}

func newRecorder(t *testing.T, vault string) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := http.NewRequestWithContext(r.Context(), r.Method, vault+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		rec.mu.Lock()
		rec.exchanges = append(rec.exchanges, exchange{r.Method, r.URL.Path, resp.StatusCode, body, answer})
		rec.mu.Unlock()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(answer)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) calls() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.exchanges...)
}

// webReveal is the example API tier, running.
type webReveal struct{ demo, component string }

// webRevealPassword is the demo cardholder's password.
const webRevealPassword = "correct horse battery staple"

// startWebReveal builds and starts examples/web-reveal against the vault
// at vaultURL with its two tokens (binding, reveals), framing card,
// hiding after hide seconds.
func startWebReveal(t *testing.T, vaultURL, devicesToken, revealToken, card string, hide int) *webReveal {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "web-reveal")
	build := exec.Command("go", "build", "-o", bin, "../../examples/web-reveal")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example backend: %v\n%s", err, out)
	}
	env := []string{"CARDVAULT_URL=" + vaultURL}
	for name, value := range map[string]string{"CARDVAULT_DEVICES_TOKEN": devicesToken, "CARDVAULT_REVEAL_TOKEN": revealToken, "WEB_REVEAL_PASSWORD": webRevealPassword} {
		file := filepath.Join(dir, strings.ToLower(name))
		os.WriteFile(file, []byte(value+"\n"), 0o600)
		env = append(env, name+"_FILE="+file)
	}
	cmd := exec.Command(bin, "--demo-listen", "127.0.0.1:0", "--component-listen", "127.0.0.1:0",
		"--person", "person-1", "--card", card, "--hide-after", fmt.Sprint(hide))
	cmd.Env = append(os.Environ(), env...)
	var logs syncBuffer
	cmd.Stderr = &logs
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("example backend's log:\n%s", logs.String())
		}
	})
	w := &webReveal{}
	sc := bufio.NewScanner(stdout)
	for (w.demo == "" || w.component == "") && sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "demo: "); ok {
			w.demo = u
		}
		if u, ok := strings.CutPrefix(sc.Text(), "component: "); ok {
			w.component = strings.TrimSuffix(u, "/")
		}
	}
	if w.demo == "" || w.component == "" {
		t.Fatalf("the example backend did not say where it listens: %s", logs.String())
	}
	go io.Copy(io.Discard, stdout)
	return w
}

// browser is a headless Chromium with a profile of its own, and every
// console call and uncaught exception its pages made.
type browser struct {
	ctx     context.Context
	mu      sync.Mutex
	console []string
}

func newBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // as root, Chromium runs only unsandboxed
		chromedp.WindowSize(760, 640),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, which lives as long as ctx: it
	// takes no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	b := &browser{ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			b.console = append(b.console, fmt.Sprintf("console.%s from %d argument(s)", ev.Type, len(ev.Args)))
		case *runtime.EventExceptionThrown:
			b.console = append(b.console, "exception: "+ev.ExceptionDetails.Text)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// within bounds how long one step may wait for the page.
func (b *browser) within() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, 90*time.Second)
}

// do runs steps that return nothing.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := b.within()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one step that returns a value.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := b.within()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// openDemo signs the demo cardholder in, which opens the demo page, and
// returns the component's iframe.
func (b *browser) openDemo(t *testing.T, url string) *chromedp.Node {
	t.Helper()
	b.do(t, "sign in", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.SendKeys(chromedp.CSS("#username"), "person-1"), chromedp.SendKeys(chromedp.CSS("#password"), webRevealPassword),
		chromedp.Click(chromedp.CSS("#submit")), chromedp.WaitReady(chromedp.CSS("iframe#reveal")))
	return get(t, b, "find the component", chromedp.Nodes(chromedp.CSS("iframe#reveal")))[0]
}

func (b *browser) text(t *testing.T, frame *chromedp.Node, sel string) string {
	t.Helper()
	if frame == nil {
		return get(t, b, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
	}
	return get(t, b, "read "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.FromNode(frame)))
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	png := get(t, b, "screenshot", chromedp.CaptureScreenshot())
	dir := os.Getenv("CARDVAULT_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// revealedDetails is what the component shows.
type revealedDetails struct{ pan, expiry, cvv, name string }

func (b *browser) reveal(t *testing.T, frame *chromedp.Node) revealedDetails {
	t.Helper()
	in := chromedp.FromNode(frame)
	b.do(t, "show the card details", chromedp.WaitVisible(chromedp.CSS("#show"), in), chromedp.Click(chromedp.CSS("#show"), in),
		chromedp.WaitVisible(chromedp.CSS("#pan"), in))
	return revealedDetails{b.text(t, frame, "#pan"), b.text(t, frame, "#expiry"), b.text(t, frame, "#cvv"), b.text(t, frame, "#name")}
}

// TestBrowserRevealWithWebCrypto is the cardholder's browser as the bound
// device: headless Chromium runs the reveal component against the real
// vault (SoftHSM2) through the example API tier, whose traffic to the
// vault is recorded.
func TestBrowserRevealWithWebCrypto(t *testing.T) {
	chromium := testenv.RequireCommand(t, "chromium")
	if real := "/usr/lib/chromium/chromium"; fileExists(real) {
		chromium = real // Debian's /usr/bin/chromium is a wrapper script
	}
	jv := newServedVault(t, []string{"cards:write"})
	const pan, cvv, name = "4000001234567899", "123", "ADA LOVELACE"
	card := jv.importCard(t, "person-1", pan)
	// The PIN is set with the Jiko guide's openssl flow before the
	// browser binds: afterwards the device gate refuses that route.
	const pin = "2468"
	if st, body := runPINFlow(t, jv.as(t, "pin-setter", "pin:write"), "person-1", card, pin); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	binder := jv.as(t, "web-devices", "devices:write")
	revealer := jv.as(t, "web-reveal", "cards:reveal", "pin:view")
	rec := newRecorder(t, jv.base)
	const hide = 5
	web := startWebReveal(t, rec.URL, binder.token, revealer.token, card, hide)

	// A first browser binds itself and reveals.
	a := newBrowser(t, chromium)
	frame := a.openDemo(t, web.demo)
	in := chromedp.FromNode(frame)
	a.do(t, "bind this browser", chromedp.WaitVisible(chromedp.CSS("#bind"), in), chromedp.Click(chromedp.CSS("#bind"), in),
		chromedp.WaitVisible(chromedp.CSS("#show"), in))
	got := a.reveal(t, frame)
	want := revealedDetails{"4000 0012 3456 7899", fmt.Sprintf("12/%02d", (time.Now().Year()+2)%100), cvv, name}
	if got != want {
		t.Fatalf("the component shows %+v, want %+v", got, want)
	}
	a.do(t, "the host page's status", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="revealed"]`)))
	status := a.text(t, nil, "#status")
	if !strings.Contains(status, fmt.Sprintf("They hide after %d s.", hide)) {
		t.Errorf("host status %q does not say the configured %d s", status, hide)
	}
	a.screenshot(t, "web-reveal-revealed.png")

	// The details hide themselves and leave the DOM.
	a.do(t, "the details hide", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="hidden"]`)),
		chromedp.WaitNotPresent(chromedp.CSS("#pan"), in))
	shown := a.text(t, frame, "body")
	host := a.text(t, nil, "body")
	for _, secret := range []string{pan[:4], pan[12:], "ADA", "/"} {
		if strings.Contains(shown, secret) || strings.Contains(host, secret) {
			t.Errorf("after hiding, the page still shows %q: %q", secret, shown)
		}
	}
	a.screenshot(t, "web-reveal-hidden.png")

	// A second reveal uses a new key.
	if again := a.reveal(t, frame); again != want {
		t.Fatalf("second reveal shows %+v", again)
	}
	a.do(t, "hide the details", chromedp.Click(chromedp.CSS("#hide"), in), chromedp.WaitNotPresent(chromedp.CSS("#pan"), in))

	// The PIN, viewed on the same bound device, is the one set; it hides
	// like the details.
	a.do(t, "show the PIN", chromedp.WaitVisible(chromedp.CSS("#show-pin"), in), chromedp.Click(chromedp.CSS("#show-pin"), in),
		chromedp.WaitVisible(chromedp.CSS("#pin"), in), chromedp.WaitVisible(chromedp.CSS(`#status[data-state="pin-shown"]`)))
	if got := a.text(t, frame, "#pin"); got != pin {
		t.Fatalf("the component shows PIN %q, want the one set", got)
	}
	if status := a.text(t, nil, "#status"); !strings.Contains(status, fmt.Sprintf("It hides after %d s.", hide)) {
		t.Errorf("host status %q after the PIN", status)
	}
	a.do(t, "the PIN hides", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="hidden"]`)), chromedp.WaitNotPresent(chromedp.CSS("#pin"), in))
	if strings.Contains(a.text(t, frame, "body"), pin) || strings.Contains(a.text(t, nil, "body"), pin) {
		t.Error("after hiding, the page still shows the PIN")
	}
	checkBackendTraffic(t, rec.calls(), pan, cvv, name)
	for _, c := range rec.calls() {
		if bytes.Contains(c.request, []byte(`"`+pin+`"`)) || bytes.Contains(c.answer, []byte(`"`+pin+`"`)) {
			t.Errorf("%s %s carries the PIN", c.method, c.path)
		}
	}
	checkNothingStored(t, a, web.component, card)

	// A second browser (a fresh profile) has no device key: it cannot
	// reveal through the component, nor with the first browser's device
	// id and a key of its own.
	deviceID := boundDeviceID(t, rec.calls())
	b := newBrowser(t, chromium)
	fresh := b.openDemo(t, web.demo)
	freshIn := chromedp.FromNode(fresh)
	b.do(t, "the fresh profile's component", chromedp.WaitVisible(chromedp.CSS("#bind"), freshIn),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="not-bound"]`)))
	if !get(t, b, "read #show's hidden", chromedp.JavascriptAttribute[bool](chromedp.CSS("#show"), "hidden", freshIn)) {
		t.Error("a browser without a device key offers to show card details")
	}
	// The fresh profile's own session's ticket, as a script in the
	// component's origin could read it from the frame's address.
	src := get(t, b, "read the frame's address", chromedp.JavascriptAttribute[string](chromedp.CSS("iframe#reveal"), "src"))
	_, fragment, _ := strings.Cut(src, "#")
	ticket := strings.TrimPrefix(fragment, "ticket=")
	before := len(rec.calls())
	b.do(t, "open the component's page", chromedp.Navigate(web.component+"/frame.html?card="+card))
	stolen := get(t, b, "reveal with a stolen device id", chromedp.Evaluate[int](stolenSessionReveal(card, deviceID, ticket), chromedp.EvalAwaitPromise))
	calls := rec.calls()[before:]
	if stolen != 403 || len(calls) != 1 || calls[0].status != 403 || bytes.Contains(calls[0].answer, []byte(`"data"`)) {
		t.Fatalf("a session without the device key asked for a reveal: backend answered %d; vault calls %d", stolen, len(calls))
	}
	for _, br := range []*browser{a, b} {
		br.mu.Lock()
		if len(br.console) > 0 {
			t.Errorf("pages wrote to the console: %q", br.console)
		}
		br.mu.Unlock()
	}
	t.Logf("bound device %s; 2 reveals with distinct keys; %d vault calls recorded; card data in the backend's traffic: 0 bytes", deviceID, len(rec.calls()))
}

func fileExists(path string) bool { _, err := os.Stat(path); return err == nil }

// checkBackendTraffic checks that what the example backend sent to and
// received from the vault held no card data, and that its two reveals
// asked for RSA-OAEP-256 + A256GCM to two different keys.
func checkBackendTraffic(t *testing.T, calls []exchange, pan, cvv, name string) {
	t.Helper()
	cardData := 0
	for _, c := range calls {
		for _, body := range [][]byte{c.request, c.answer} {
			// The values, and the secure view payload's member names (a
			// challenge has an expires_at of its own, so the expiry is
			// looked for by its value).
			expiry := fmt.Sprintf("%d-12-31", time.Now().Year()+2)
			// A three-digit CVV turns up in base64 by chance; in clear
			// JSON it is a quoted value.
			for _, secret := range []string{pan, pan[:4] + " " + pan[4:8], `"` + cvv + `"`, name, expiry, `"pan"`, `"cvc"`, `"cvv"`, `"line_1"`} {
				if n := bytes.Count(body, []byte(secret)); n > 0 {
					t.Errorf("%s %s (%d) carries %q", c.method, c.path, c.status, secret)
					cardData += n * len(secret)
				}
			}
		}
	}
	if cardData != 0 {
		t.Fatalf("the backend's traffic held %d bytes of card data", cardData)
	}
	kids := map[string]bool{}
	moduli := map[string]bool{}
	for _, c := range calls {
		if !strings.HasSuffix(c.path, "/virtual_card_requests") {
			continue
		}
		var req struct {
			JWK struct{ N, Kid string }   `json:"jwk"`
			JWE struct{ Alg, Enc string } `json:"jwe"`
		}
		json.Unmarshal(c.request, &req)
		if c.status != 200 || req.JWE.Alg != "RSA_OAEP_256" || req.JWE.Enc != "A256GCM" {
			t.Errorf("reveal call: %d, %s/%s", c.status, req.JWE.Alg, req.JWE.Enc)
		}
		kids[req.JWK.Kid], moduli[req.JWK.N] = true, true
		if !regexp.MustCompile(`^\{"data":"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}"\}\s*$`).Match(c.answer) {
			t.Errorf("the vault's answer is not one compact JWE: %.80s", c.answer)
		}
	}
	if len(kids) != 2 || len(moduli) != 2 {
		t.Fatalf("two reveals used %d kids and %d moduli; want a new key each", len(kids), len(moduli))
	}
}

// storageReport is what the component's origin stores.
type storageReport struct {
	Local, Session int
	Keys           []string
	Exported       string
}

// checkNothingStored opens the component's origin in a tab of its own and
// checks that its web storage is empty and that IndexedDB holds only the
// device, whose private key cannot be exported.
func checkNothingStored(t *testing.T, b *browser, component, card string) {
	t.Helper()
	b.do(t, "open the component's page", chromedp.Navigate(component+"/frame.html?card="+card))
	out := get(t, b, "inspect the component's storage", chromedp.Evaluate[storageReport](`(async () => {
			const m = await import('/cardvault-reveal.js');
			const dev = await m.boundDevice();
			let exported = 'no device';
			if (dev) {
				try { await crypto.subtle.exportKey('pkcs8', dev.keys.privateKey); exported = 'exported'; }
				catch (e) { exported = e.name; }
			}
			const db = await new Promise((ok) => { const r = indexedDB.open('cardvault-device'); r.onsuccess = () => ok(r.result); });
			const keys = await new Promise((ok) => { const r = db.transaction('device').objectStore('device').getAllKeys(); r.onsuccess = () => ok(r.result); });
			db.close();
			return { Local: localStorage.length, Session: sessionStorage.length, Keys: keys, Exported: exported };
		})()`, chromedp.EvalAwaitPromise))
	if out.Local != 0 || out.Session != 0 || len(out.Keys) != 1 || out.Keys[0] != "current" || out.Exported != "InvalidAccessError" {
		t.Fatalf("the component's storage: %+v; want no web storage, one device, a private key that cannot be exported", out)
	}
}

// boundDeviceID is the device the example backend registered.
func boundDeviceID(t *testing.T, calls []exchange) string {
	t.Helper()
	for _, c := range calls {
		if c.path == "/v1/mfa/devices" && c.status == 202 {
			var reg struct{ ID string }
			json.Unmarshal(c.answer, &reg)
			return reg.ID
		}
	}
	t.Fatal("no device was registered")
	return ""
}

// stolenSessionReveal is script for a page of the component's origin that
// holds the cardholder's session but not the device key: it knows the
// device id, makes a device key of its own and asks for a reveal. It
// evaluates to the backend's status.
func stolenSessionReveal(card, deviceID, ticket string) string {
	return fmt.Sprintf(`(async () => {
		const m = await import('/cardvault-reveal.js');
		const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
		const mine = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
		const pair = await crypto.subtle.generateKey({ name: 'RSA-OAEP', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, false, ['encrypt', 'decrypt']);
		const pub = await crypto.subtle.exportKey('jwk', pair.publicKey);
		const jwk = { kty: 'RSA', n: pub.n, e: pub.e, kid: crypto.randomUUID(), use: 'enc', alg: 'RS256' };
		const raw = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, mine.privateKey, new TextEncoder().encode(m.signedString(jwk))));
		const resp = await fetch('/api/cards/%s/reveal', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + %q },
			body: JSON.stringify({ device_id: %q, signature: hex(m.derSignature(raw)), jwk }) });
		return resp.status;
	})()`, card, ticket, deviceID)
}
