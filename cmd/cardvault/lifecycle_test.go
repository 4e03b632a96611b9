package main

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	_ "modernc.org/sqlite"

	"github.com/cardvault/cardvault/auditchain"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// lifecycleEnv serves a vault whose reveal budgets allow every reveal the
// lifecycle tests make, and whose servers see key changes within 200 ms.
var lifecycleEnv = []string{envPerCard + "=1000", envPerDevice + "=1000", envKeyRefresh + "=200ms", envPINPerCard + "=100", envDeviceGate + "=off"}

// panFor makes a Luhn-valid test PAN from a number.
func panFor(i int) string {
	body := fmt.Sprintf("400000%09d", i)
	for d := 0; d < 10; d++ {
		if pan := body + strconv.Itoa(d); luhn(pan) {
			return pan
		}
	}
	panic("no check digit")
}

// viewer reveals cards of one person through the Solaris secure view, with
// a fresh device key per reveal (keys are single-use), and decrypts the
// JWE in the test.
type viewer struct {
	jv     *jikoVault
	device *testDevice
	keys   chan *rsa.PrivateKey // made ahead, so reveals can run back to back
}

func newViewer(t *testing.T, jv *jikoVault, person string) *viewer {
	return &viewer{jv: jv, device: jv.bindDevice(t, person, true), keys: make(chan *rsa.PrivateKey, 256)}
}

// prepare makes n device keys ahead, on every core.
func (v *viewer) prepare(t *testing.T, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 2 {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					panic(err)
				}
				v.keys <- k
			}
		}()
	}
	wg.Wait()
}

// reveal returns the card's PAN as the vault reveals it, or an error.
func (v *viewer) reveal(t *testing.T, card string) (string, error) {
	var key *rsa.PrivateKey
	select {
	case key = <-v.keys:
	default:
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return "", err
		}
	}
	jwk := map[string]string{
		"kty": "RSA", "use": "enc", "alg": "RS256", "kid": fmt.Sprintf("kid-%d", time.Now().UnixNano()),
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}
	r := v.jv.secureView(t, &secureViewReq{card: card, device: v.device, jwk: jwk, sig: sign(t, v.device.key, signedString(jwk)), alg: "RSA_OAEP_256", enc: "A256GCM"})
	if r.status != 200 {
		return "", fmt.Errorf("secure view of %s: %d %s", card, r.status, r.body)
	}
	var body struct{ Data string }
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		return "", err
	}
	obj, err := jose.ParseEncrypted(body.Data, []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return "", err
	}
	plain, err := obj.Decrypt(key)
	if err != nil {
		return "", err
	}
	var fields struct{ PAN string }
	if err := json.Unmarshal(plain, &fields); err != nil {
		return "", err
	}
	return fields.PAN, nil
}

// revealAll reveals every card and checks each PAN.
func (v *viewer) revealAll(t *testing.T, phase string, cards map[string]string) {
	t.Helper()
	for id, pan := range cards {
		got, err := v.reveal(t, id)
		if err != nil || got != pan {
			t.Fatalf("%s: card %s revealed %q (%v), want its PAN", phase, id, mask(got), err)
		}
	}
}

func mask(pan string) string {
	if len(pan) < 4 {
		return pan
	}
	return "…" + pan[len(pan)-4:]
}

// componentForm writes a custodian's component form with the KCV that
// openssl computes for it: AES-CMAC of a zero block, first 3 bytes.
func componentForm(t *testing.T, dir, custodian string, value []byte, kcv string) string {
	t.Helper()
	path := filepath.Join(dir, "component-"+custodian)
	form := fmt.Sprintf("custodian: %s\ncomponent: %X\nkcv: %s\n", custodian, value, kcv)
	if err := os.WriteFile(path, []byte(form), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// opensslKCV is the KCV of an AES-256 key by openssl: AES-256 CMAC over
// one zero block.
func opensslKCV(t *testing.T, key []byte) string {
	t.Helper()
	openssl := testenv.RequireCommand(t, "openssl")
	zero := filepath.Join(t.TempDir(), "zero")
	if err := os.WriteFile(zero, make([]byte, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:"+hex.EncodeToString(key), "-in", zero, "CMAC").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl mac: %v\n%s", err, out)
	}
	mac := strings.TrimSpace(string(out))
	if len(mac) != 32 {
		t.Fatalf("openssl mac printed %q", out)
	}
	return strings.ToUpper(mac[:6])
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// xorAll is the XOR of keys.
func xorAll(keys ...[]byte) []byte {
	out := make([]byte, 32)
	for _, k := range keys {
		for i := range out {
			out[i] ^= k[i]
		}
	}
	return out
}

// importComponents forms a purpose's next version from fresh random
// components and returns the combined key, which the test may then use
// to check what the vault did with it.
func importComponents(t *testing.T, v *vaultEnv, purpose string, n int) []byte {
	t.Helper()
	dir := t.TempDir()
	args := []string{"ceremony", "import-components", "--purpose", purpose, "--components", strconv.Itoa(n), "--operator", "ops"}
	var comps [][]byte
	for i := range n {
		c := randomKey(t)
		comps = append(comps, c)
		args = append(args, "--component-file", componentForm(t, dir, fmt.Sprintf("custodian%d", i+1), c, opensslKCV(t, c)))
	}
	if out, err := v.run(t, args...); err != nil {
		t.Fatalf("import-components %s: %v\n%s", purpose, err, out)
	}
	return xorAll(comps...)
}

// keyUse reads the dry run's table: records per "purpose/version".
func keyUse(t *testing.T, v *vaultEnv) (map[string]int, int) {
	t.Helper()
	out, err := v.run(t, "ceremony", "rewrap", "--dry-run")
	if err != nil {
		t.Fatalf("rewrap --dry-run: %v\n%s", err, out)
	}
	use := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^(card-kek|pan-hmac|pek)\s+(\d+)(?: \(active\))?\s+(\d+)`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[3])
		use[m[1]+"/v"+m[2]] = n
	}
	stale := regexp.MustCompile(`stale records: (\d+)`).FindStringSubmatch(out)
	if stale == nil {
		t.Fatalf("dry run without a stale count:\n%s", out)
	}
	n, _ := strconv.Atoi(stale[1])
	return use, n
}

// pinBlocks reads the PIN blocks and their PEK versions from the database.
func pinBlocks(t *testing.T, v *vaultEnv) map[string]struct {
	block   []byte
	version int
} {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(v.dir, "vault.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, pin_block, pin_key_version FROM cards WHERE pin_block IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]struct {
		block   []byte
		version int
	}{}
	for rows.Next() {
		var id string
		var b []byte
		var ver int
		if err := rows.Scan(&id, &b, &ver); err != nil {
			t.Fatal(err)
		}
		out[id] = struct {
			block   []byte
			version int
		}{b, ver}
	}
	return out
}

// pinFromBlock deciphers a format 4 PIN block with a known PEK: the
// test's own ISO 9564-1 decoding, independent of the vault's.
func pinFromBlock(t *testing.T, pek, block []byte, pan string) string {
	t.Helper()
	c, err := aes.NewCipher(pek)
	if err != nil {
		t.Fatal(err)
	}
	ib := make([]byte, 16)
	c.Decrypt(ib, block)
	m := len(pan) - 12
	nibbles := fmt.Sprintf("%d%s", m, pan)
	nibbles += strings.Repeat("0", 32-len(nibbles))
	panField, _ := hex.DecodeString(nibbles)
	for i := range ib {
		ib[i] ^= panField[i]
	}
	field := make([]byte, 16)
	c.Decrypt(field, ib)
	h := hex.EncodeToString(field)
	if h[0] != '4' {
		return "not format 4: control " + h[:1]
	}
	n, _ := strconv.ParseInt(h[1:2], 16, 8)
	return h[2 : 2+n]
}

// TestRotateRewrapRetire runs the key lifecycle against the real binary,
// token and database while the server serves: cards issued under v1, a
// rotation, cards under v2, a rewrap with reveals running through it, and
// retirement, refused before the rewrap and done after. The PEKs are
// formed from components, so the test can decode the PIN blocks itself.
func TestRotateRewrapRetire(t *testing.T) {
	v := newVaultEnv(t)
	pek1 := importComponents(t, v, "pek", 2)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", pinScopes...)
	base, logs := startServer(t, v, lifecycleEnv...)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
	const person = "person-1"
	view := newViewer(t, jv, person)

	cards := map[string]string{} // id → PAN
	for i := range 24 {
		cards[jv.importCard(t, person, panFor(i))] = panFor(i)
	}
	pins := map[string]string{} // id → PIN
	for i, pin := range []string{"1357", "8642"} {
		_, card := orderPhysicalCard(t, jv, person)
		if status, body := runPINFlow(t, jv, person, card, pin); !strings.Contains(status, "200") {
			t.Fatalf("PIN %d: %s %s", i, status, body)
		}
		pins[card] = pin
		pan, err := view.reveal(t, card)
		if err != nil {
			t.Fatal(err)
		}
		cards[card] = pan
	}
	view.revealAll(t, "before rotation", cards)
	for id, b := range pinBlocks(t, v) {
		if got := pinFromBlock(t, pek1, b.block, cards[id]); b.version != 1 || got != pins[id] {
			t.Fatalf("PIN block of %s under pek/v%d decodes to %q, want %q under v1", id, b.version, got, pins[id])
		}
	}

	for _, p := range []string{"card-kek", "pan-hmac"} {
		if out, err := v.run(t, "ceremony", "rotate", "--purpose", p); err != nil {
			t.Fatalf("rotate %s: %v\n%s", p, err, out)
		}
	}
	pek2 := importComponents(t, v, "pek", 3)
	time.Sleep(500 * time.Millisecond) // the server's key view refreshes every 200 ms
	for i := 100; i < 108; i++ {
		cards[jv.importCard(t, person, panFor(i))] = panFor(i)
	}
	use, stale := keyUse(t, v)
	if use["card-kek/v1"] != 26 || use["card-kek/v2"] != 8 || use["pan-hmac/v1"] != 26 || use["pek/v1"] != 2 || use["pek/v2"] != 0 || stale != 26 {
		t.Fatalf("before rewrap: %v, %d stale", use, stale)
	}
	out, err := v.run(t, "ceremony", "retire", "--purpose", "card-kek", "--version", "1", "--transcript", filepath.Join(v.dir, "retire-refused.txt"))
	if err == nil || !strings.Contains(out, "26 record(s) still use it") {
		t.Fatalf("retire with records under v1: err=%v\n%s", err, out)
	}

	// Reveals run from before the rewrap starts until after it ends, one
	// record per batch, so they interleave however the scheduler likes.
	view.prepare(t, 60)
	var revealed, wrong atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for id, pan := range cards {
				select {
				case <-stop:
					return
				default:
				}
				if got, err := view.reveal(t, id); err != nil || got != pan {
					t.Errorf("during rewrap: card %s: %q, %v", id, mask(got), err)
					wrong.Add(1)
				}
				revealed.Add(1)
			}
		}
	}()
	for revealed.Load() == 0 && wrong.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	out, err = v.run(t, "ceremony", "rewrap", "--batch", "1", "--operator", "ops")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("rewrap: %v\n%s", err, out)
	}
	t.Logf("%d reveals ran alongside the rewrap, %d wrong", revealed.Load(), wrong.Load())
	for _, want := range []string{"progress: 1/26 done, 25 remaining", "progress: 26/26 done, 0 remaining", "moved 26, skipped 0 (changed meanwhile), failed 0", "transcript sha256: "} {
		if !strings.Contains(out, want) {
			t.Errorf("rewrap output lacks %q:\n%s", want, out)
		}
	}
	use, stale = keyUse(t, v)
	if use["card-kek/v1"] != 0 || use["card-kek/v2"] != 34 || use["pan-hmac/v1"] != 0 || use["pan-hmac/v2"] != 34 || use["pek/v1"] != 0 || use["pek/v2"] != 2 || stale != 0 {
		t.Fatalf("after rewrap: %v, %d stale", use, stale)
	}
	for id, b := range pinBlocks(t, v) {
		if got := pinFromBlock(t, pek2, b.block, cards[id]); b.version != 2 || got != pins[id] {
			t.Fatalf("PIN block of %s under pek/v%d decodes to %q under v2, want %q", id, b.version, got, pins[id])
		}
	}
	view.revealAll(t, "after rewrap", cards)
	// The fingerprints moved with the records: a known PAN is still a
	// duplicate.
	r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": person, "pan": panFor(3), "cvv": "123", "expiry_month": 12, "expiry_year": time.Now().Year() + 2, "name": "ADA LOVELACE"}, nil)
	if r.status != 409 {
		t.Fatalf("importing a v1-fingerprinted PAN again after the rewrap: %d %s", r.status, r.body)
	}

	for _, p := range []string{"card-kek", "pan-hmac", "pek"} {
		out, err := v.run(t, "ceremony", "retire", "--purpose", p, "--version", "1", "--operator", "ops")
		if err != nil || !strings.Contains(out, "retired; 1 object(s) destroyed") {
			t.Fatalf("retire %s/v1: %v\n%s", p, err, out)
		}
	}
	if out, err := v.run(t, "ceremony", "retire", "--purpose", "card-kek", "--version", "2"); err == nil || !strings.Contains(out, "active version") {
		t.Fatalf("retiring the active version: err=%v\n%s", err, out)
	}
	list, _ := v.run(t, "ceremony", "list")
	for _, gone := range []string{"card-kek/v1", "pan-hmac/v1", "pek/v1"} {
		if strings.Contains(list, gone) {
			t.Errorf("%s is still listed after retirement:\n%s", gone, list)
		}
	}
	time.Sleep(500 * time.Millisecond)
	view.revealAll(t, "after retirement", cards)
	if out, err := v.run(t, "audit", "verify"); err != nil || !strings.Contains(out, "every chain and checkpoint verifies") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}

	// Every ceremony is in the chain, and an export says so.
	export := exportAndVerifyAudit(t, v, nil, "ceremony.import-components=ok", "ceremony.init=ok", "ceremony.rotate=ok",
		"ceremony.retire=failed", "ceremony.rewrap=ok", "ceremony.retire=ok", "key.retire=ok", "key.rewrap=ok")
	// Two exports, the second from where the first ended, append to one
	// that verifies; the second alone verifies too, continuing its chains.
	cut := time.Now().UTC().Format(time.RFC3339Nano)
	view.revealAll(t, "between exports", cards)
	first, second := filepath.Join(v.dir, "until.jsonl"), filepath.Join(v.dir, "since.jsonl")
	for _, args := range [][]string{{"--until", cut, "--out", first}, {"--since", cut, "--out", second}} {
		if out, err := v.run(t, append([]string{"audit", "export"}, args...)...); err != nil {
			t.Fatalf("audit export %v: %v\n%s", args, err, out)
		}
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	joined := filepath.Join(v.dir, "joined.jsonl")
	os.WriteFile(joined, append(a, b...), 0o600)
	for _, f := range []string{joined, second} {
		if out, err := v.run(t, "audit", "verify", "--file", f); err != nil || !strings.Contains(out, "result: the export verifies") {
			t.Fatalf("verify %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
	if n := strings.Count(string(b), `"type":"entry"`); n < len(cards) {
		t.Fatalf("the second export holds %d entries, want at least the %d reveals made after the cut", n, len(cards))
	}
	// An edited entry, and a removed one, are named.
	raw, _ := os.ReadFile(export)
	edited := strings.Replace(string(raw), `"outcome":"failed: refusing to retire`, `"outcome":"ok: refusing to retire`, 1)
	// Removed: a chain's first entry, and an entry in the middle of one.
	lines := strings.SplitAfter(string(raw), "\n")
	chainOf := regexp.MustCompile(`"type":"entry","chain":"([^"]+)","seq":([0-9]+)`)
	without := func(i int) string {
		return strings.Join(append(append([]string{}, lines[:i]...), lines[i+1:]...), "")
	}
	head, middle := string(raw), string(raw)
	for i := 1; i+1 < len(lines); i++ {
		a, b, c := chainOf.FindStringSubmatch(lines[i-1]), chainOf.FindStringSubmatch(lines[i]), chainOf.FindStringSubmatch(lines[i+1])
		if b != nil && b[2] == "1" && c != nil && c[1] == b[1] && head == string(raw) {
			head = without(i)
		}
		if a != nil && b != nil && c != nil && a[1] == b[1] && b[1] == c[1] && middle == string(raw) {
			middle = without(i)
		}
	}
	// The export is MACed in the token as a whole (issue 27): an empty
	// file, or one without its window line, verifies no more than an
	// edited one.
	for name, body := range map[string]string{"edited": edited, "head removed": head, "middle removed": middle,
		"emptied": "\n", "window removed": without(0)} {
		if body == string(raw) {
			t.Fatalf("%s: the tampering changed nothing", name)
		}
		f := filepath.Join(v.dir, strings.ReplaceAll(name, " ", "-")+".jsonl")
		os.WriteFile(f, []byte(body), 0o600)
		out, err := v.run(t, "audit", "verify", "--file", f)
		if err == nil || !strings.Contains(out, "BROKEN: ") || strings.Contains(out, "the export verifies") {
			t.Fatalf("verify of an export with an entry %s: err=%v\n%s", name, err, out)
		}
	}
}

// TestRewrapResumesAfterCrash kills a rewrap halfway (after it moved 17
// records in memory, in its fifth batch of 4) and runs it again: the 16
// stored by then stay moved, nothing is lost, and every card reveals.
func TestRewrapResumesAfterCrash(t *testing.T) {
	jv := newServedVault(t, solarisScopes, lifecycleEnv...)
	const person = "person-1"
	cards := map[string]string{}
	for i := range 30 {
		cards[jv.importCard(t, person, panFor(i))] = panFor(i)
	}
	if out, err := jv.run(t, "ceremony", "rotate", "--purpose", "card-kek"); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	crashed := *jv.vaultEnv
	crashed.bin = hookBinary
	crashed.env = append(append([]string{}, jv.env...), "CARDVAULT_TEST_REWRAP_KILL_AFTER=17")
	out, err := crashed.run(t, "ceremony", "rewrap", "--batch", "4", "--transcript", filepath.Join(jv.dir, "crashed.txt"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.String() != "signal: killed" {
		t.Fatalf("rewrap with the kill hook: %v\n%s", err, out)
	}
	use, stale := keyUse(t, jv.vaultEnv)
	if use["card-kek/v1"] != 14 || use["card-kek/v2"] != 16 || stale != 14 {
		t.Fatalf("after the crash: %v, %d stale; want 16 moved in 4 whole batches, 14 left", use, stale)
	}
	view := newViewer(t, jv, person)
	view.revealAll(t, "after the crash", cards)

	out, err = jv.run(t, "ceremony", "rewrap", "--batch", "4")
	if err != nil || !strings.Contains(out, "moved 14, skipped 0 (changed meanwhile), failed 0") {
		t.Fatalf("resumed rewrap: %v\n%s", err, out)
	}
	use, stale = keyUse(t, jv.vaultEnv)
	if use["card-kek/v1"] != 0 || use["card-kek/v2"] != 30 || stale != 0 {
		t.Fatalf("after resuming: %v, %d stale", use, stale)
	}
	view.revealAll(t, "after resuming", cards)
	if out, err := jv.run(t, "audit", "verify"); err != nil {
		t.Fatalf("audit verify after a crash: %v\n%s", err, out)
	}
}

// TestImportComponentsMatchesOpenSSL forms a card KEK from three
// components and checks every KCV against openssl's: each component's,
// and the combined key's, which openssl computes over the XOR of the
// test's components. A wrong KCV aborts with nothing written.
func TestImportComponentsMatchesOpenSSL(t *testing.T) {
	v := newVaultEnv(t)
	dir := t.TempDir()
	comps := [][]byte{randomKey(t), randomKey(t), randomKey(t)}
	var forms []string
	for i, c := range comps {
		forms = append(forms, componentForm(t, dir, fmt.Sprintf("custodian%d", i+1), c, opensslKCV(t, c)))
	}
	combinedKCV := opensslKCV(t, xorAll(comps...))

	// A form whose KCV does not match its component: aborted.
	bad := componentForm(t, dir, "mallory", comps[2], "000000")
	transcript := filepath.Join(dir, "aborted.txt")
	out, err := v.run(t, "ceremony", "import-components", "--purpose", "card-kek", "--components", "3",
		"--component-file", forms[0], "--component-file", forms[1], "--component-file", bad, "--transcript", transcript)
	if err == nil || !strings.Contains(out, "component 3 (custodian mallory): its KCV is "+opensslKCV(t, comps[2])) || !strings.Contains(out, "nothing written") {
		t.Fatalf("wrong KCV: err=%v\n%s", err, out)
	}
	if list, _ := v.run(t, "ceremony", "list"); strings.Contains(list, "card-kek/") {
		t.Fatalf("an aborted import left a key:\n%s", list)
	}
	if _, err := os.Stat(transcript); err == nil {
		t.Fatal("an aborted import wrote a transcript")
	}

	// The same components typed at the prompt, each KCV confirmed.
	var stdin strings.Builder
	for i, c := range comps {
		fmt.Fprintf(&stdin, "custodian%d\n%X\n%s\n", i+1, c, strings.ToLower(opensslKCV(t, c)))
	}
	cmd := exec.Command(binary, "ceremony", "import-components", "--purpose", "card-kek", "--components", "3", "--operator", "ops",
		"--transcript", filepath.Join(dir, "imported.txt"))
	cmd.Env, cmd.Dir, cmd.Stdin = v.env, v.dir, strings.NewReader(stdin.String())
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("import-components at the prompt: %v\n%s", err, outb)
	}
	out = string(outb)
	for i, c := range comps {
		if want := fmt.Sprintf("component %d: custodian custodian%d, confirmed ", i+1, i+1); !strings.Contains(out, want) || !strings.Contains(out, "KCV "+opensslKCV(t, c)) {
			t.Errorf("transcript lacks %q with KCV %s:\n%s", want, opensslKCV(t, c), out)
		}
	}
	if !strings.Contains(out, "combined: card-kek/v1  KCV "+combinedKCV+" (AES-CMAC)  imported, verified, recorded, active") {
		t.Fatalf("combined KCV is not openssl's %s:\n%s", combinedKCV, out)
	}
	written, _ := os.ReadFile(filepath.Join(dir, "imported.txt"))
	for _, c := range comps {
		for _, form := range []string{hex.EncodeToString(c), strings.ToUpper(hex.EncodeToString(c))} {
			if strings.Contains(string(written), form) || strings.Contains(out, form) {
				t.Fatal("a component value reached the transcript or the output")
			}
		}
	}
	list, _ := v.run(t, "ceremony", "list")
	if !regexp.MustCompile(`card-kek/v1\s.*KCV ` + combinedKCV).MatchString(list) {
		t.Fatalf("catalog does not show the combined KCV %s:\n%s", combinedKCV, list)
	}
}

// TestBackupRestoreToAnotherToken exports token A's keys under a key from
// two components and restores them into token B, a separate SoftHSM2
// token. The catalogs match KCV for KCV, and a server on B reads the
// cards a server on A wrote, over the same database.
func TestBackupRestoreToAnotherToken(t *testing.T) {
	// Keys leave by wrap only if the ceremony that made them chose it;
	// a rotation keeps the choice.
	a := newServedVaultInit(t, []string{"--backup", "wrap"}, solarisScopes, lifecycleEnv...)
	if out, err := a.run(t, "ceremony", "rotate", "--purpose", "card-kek"); err != nil || !strings.Contains(out, "backup:   wrap") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	const person = "person-1"
	cards := map[string]string{}
	for i := range 6 {
		cards[a.importCard(t, person, panFor(i))] = panFor(i)
	}

	dir := t.TempDir()
	c1, c2 := randomKey(t), randomKey(t)
	forms := []string{"--components", "2",
		"--component-file", componentForm(t, dir, "alice", c1, opensslKCV(t, c1)),
		"--component-file", componentForm(t, dir, "bob", c2, opensslKCV(t, c2))}
	backup := filepath.Join(dir, "backup.json")
	if out, err := a.run(t, append([]string{"ceremony", "export", "--out", backup}, forms...)...); err == nil || !strings.Contains(out, envSOPINFile) {
		t.Fatalf("export without the SO PIN: err=%v\n%s", err, out)
	}
	soPIN := filepath.Join(a.dir, "so-pin")
	os.WriteFile(soPIN, []byte(a.tok.SOPIN+"\n"), 0o600)
	exporter := *a.vaultEnv
	exporter.env = append(append([]string{}, a.env...), envSOPINFile+"="+soPIN)
	out, err := exporter.run(t, append([]string{"ceremony", "export", "--out", backup, "--operator", "ops"}, forms...)...)
	if err != nil || !strings.Contains(out, "result: 7 key object(s) exported") || !strings.Contains(out, "wrapping: KCV "+opensslKCV(t, xorAll(c1, c2))) {
		t.Fatalf("export: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(backup)
	if strings.Contains(string(raw), a.tok.SOPIN) || strings.Contains(string(raw), a.tok.PIN) {
		t.Fatal("the backup holds a PIN")
	}

	b := newVaultEnv(t)
	b.env = append(b.env, envDB+"=sqlite:"+filepath.Join(a.dir, "vault.db"), envTokensFile+"="+filepath.Join(a.dir, "api-tokens"))
	wrong := randomKey(t)
	if out, err := b.run(t, "ceremony", "import", "--in", backup, "--components", "2",
		"--component-file", componentForm(t, dir, "alice2", c1, opensslKCV(t, c1)),
		"--component-file", componentForm(t, dir, "eve", wrong, opensslKCV(t, wrong))); err == nil || !strings.Contains(out, "the backup was wrapped under") {
		t.Fatalf("import under the wrong components: err=%v\n%s", err, out)
	}
	out, err = b.run(t, append([]string{"ceremony", "import", "--in", backup, "--operator", "ops"}, forms...)...)
	if err != nil || !strings.Contains(out, "result: 7 key object(s) restored") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	listA, _ := a.run(t, "ceremony", "list")
	listB, _ := b.run(t, "ceremony", "list")
	// Label, class, check value and status of every row: the same keys,
	// each recorded for its own token (B's by the import ceremony).
	row := regexp.MustCompile(`^(\S+)\s+\S+\s+\d+\s+\S+\s+(\S+)\s.*?(KCV [0-9A-F]{6} \([A-Z0-9-]+\)|sha256:[0-9a-f]{64}|-)\s+(recorded|REJECTED.*)$`)
	checks := func(list string) []string {
		var out []string
		for _, line := range strings.Split(list, "\n")[1:] {
			if m := row.FindStringSubmatch(line); m != nil {
				out = append(out, strings.Join(m[1:], " "))
			}
		}
		return out
	}
	if a, b := strings.Join(checks(listA), "\n"), strings.Join(checks(listB), "\n"); a != b || !strings.Contains(a, "card-kek/v2 secret KCV") || strings.Contains(a+b, "REJECTED") {
		t.Fatalf("catalogs differ:\nA:\n%s\nB:\n%s", a, b)
	}

	baseB, logsB := startServer(t, b, lifecycleEnv...)
	onB := &jikoVault{vaultEnv: b, base: baseB, token: a.token, logs: logsB}
	newViewer(t, onB, person).revealAll(t, "token B reading token A's cards", cards)
	id := onB.importCard(t, person, panFor(50))
	if got, err := newViewer(t, a, person).reveal(t, id); err != nil || got != panFor(50) {
		t.Fatalf("token A reading token B's card: %q, %v", mask(got), err)
	}
	exportAndVerifyAudit(t, a.vaultEnv, []*vaultEnv{b}, "ceremony.init=ok", "ceremony.rotate=ok", "ceremony.export=ok", "ceremony.import=ok")
}

// TestAuditVerifyFindsTampering serves traffic with a checkpoint every 2
// entries per chain, snapshots the database, and tampers with copies of
// it: `audit verify`, checking checkpoints with the token's audit key,
// passes the untouched copy and names the tampered row in each other one.
func TestAuditVerifyFindsTampering(t *testing.T) {
	jv := newServedVault(t, solarisScopes, envAuditEvery+"=2")
	for i := range 6 * 64 { // 6 entries in each of the server's 64 chains (sqlstore.auditChains)
		jv.importCard(t, "person-1", panFor(i))
	}
	dir := t.TempDir()
	snapshot := func(name string) (string, *sql.DB) {
		path := filepath.Join(dir, name+".db")
		live, err := sql.Open("sqlite", "file:"+filepath.Join(jv.dir, "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		if _, err := live.Exec(`VACUUM INTO ?`, path); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return path, db
	}
	verify := func(path string) (string, error) {
		v := *jv.vaultEnv
		v.env = append(append([]string{}, jv.env...), envDB+"=sqlite:"+path)
		return v.run(t, "audit", "verify")
	}

	path, db := snapshot("intact")
	out, err := verify(path)
	if err != nil || !strings.Contains(out, "every chain and checkpoint verifies") || regexp.MustCompile(`checkpoints: 0\b`).MatchString(out) {
		t.Fatalf("intact trail: %v\n%s", err, out)
	}
	// A chain with four entries or more, and its rows in order.
	var chain string
	if err := db.QueryRow(`SELECT chain FROM audit WHERE chain IS NOT NULL GROUP BY chain HAVING COUNT(*) >= 4 LIMIT 1`).Scan(&chain); err != nil {
		t.Fatal(err)
	}
	var ids []string
	rows, _ := db.Query(`SELECT id FROM audit WHERE chain = ? ORDER BY seq`, chain)
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	rows.Close()

	for _, tc := range []struct {
		name  string
		sql   []string
		at    string // what verify must name
		cause string
	}{
		{"edit", []string{`UPDATE audit SET actor = 'someone else' WHERE id = '` + ids[2] + `'`},
			fmt.Sprintf("chain %s seq 3 (audit id %s): entry does not match its hash", chain, ids[2]), "edited"},
		{"delete", []string{`DELETE FROM audit WHERE id = '` + ids[1] + `'`},
			fmt.Sprintf("chain %s seq 2 (audit id none): entry missing", chain), "removed"},
		{"reorder", []string{
			`UPDATE audit SET seq = -1 WHERE id = '` + ids[1] + `'`,
			`UPDATE audit SET seq = 2 WHERE id = '` + ids[2] + `'`,
			`UPDATE audit SET seq = 3 WHERE id = '` + ids[1] + `'`},
			fmt.Sprintf("chain %s seq 2 (audit id %s): previous-hash link does not match", chain, ids[2]), "reordered"},
	} {
		path, db := snapshot(tc.name)
		for _, q := range tc.sql {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		out, err := verify(path)
		if err == nil || !strings.Contains(out, "BROKEN: "+tc.at) || !strings.Contains(out, "first broken link") {
			t.Errorf("%s (%s): verify err=%v, want it to name %q:\n%s", tc.name, tc.cause, err, tc.at, out)
		}
	}
}

// exportAndVerifyAudit exports v's audit trail and checks, of the export: that
// `audit verify --file` verifies it with the token: trailer MACs, hash
// chains and checkpoint MACs; that each action in want has an entry with that
// outcome prefix ("ceremony.rotate=ok", "ceremony.retire=failed"); and
// that every ceremony entry names a transcript whose SHA-256 it carries.
// It returns the export's path.
func exportAndVerifyAudit(t *testing.T, v *vaultEnv, others []*vaultEnv, want ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if out, err := v.run(t, "audit", "export", "--out", path); err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	out, err := v.run(t, "audit", "verify", "--file", path)
	if err != nil || !strings.Contains(out, "hash chains: every entry's hash recomputed") || !strings.Contains(out, "result: the export verifies") ||
		!regexp.MustCompile(`checkpoint MACs: [1-9][0-9]* verified with the token's audit key`).MatchString(out) {
		t.Fatalf("audit verify --file: %v\n%s", err, out)
	}
	t.Logf("audit verify --file:\n%s", out)
	raw, _ := os.ReadFile(path)
	var lines []auditchain.Line
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e auditchain.Line
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("export line %q: %v", l, err)
		}
		lines = append(lines, e)
	}
	for _, w := range want {
		action, outcome, _ := strings.Cut(w, "=")
		found := false
		for _, e := range lines {
			found = found || (e.Action == action && strings.HasPrefix(e.Outcome, outcome))
		}
		if !found {
			t.Errorf("the export has no %s entry with outcome %s", action, outcome)
		}
	}
	for _, e := range lines {
		if !strings.HasPrefix(e.Action, "ceremony.") {
			continue
		}
		var d map[string]string
		json.Unmarshal([]byte(e.Detail), &d)
		// Transcripts are where each ceremony's environment wrote them.
		var matches []string
		for _, env := range append([]*vaultEnv{v}, others...) {
			for _, pattern := range []string{filepath.Join(env.dir, "*", d["transcript"]), filepath.Join(env.dir, d["transcript"])} {
				m, _ := filepath.Glob(pattern)
				matches = append(matches, m...)
			}
		}
		if len(matches) != 1 {
			t.Errorf("%s names transcript %q, found %d", e.Action, d["transcript"], len(matches))
			continue
		}
		body, _ := os.ReadFile(matches[0])
		if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != d["transcript_sha256"] || d["token_serial"] == "" {
			t.Errorf("%s: transcript %s hashes to %x, the entry says %s (serial %q)", e.Action, matches[0], sum, d["transcript_sha256"], d["token_serial"])
		}
	}
	return path
}
