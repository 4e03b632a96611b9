package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// TestVerifyPINWithZoneKeyFromTR31 is issue 32's PIN verification end to
// end: a zone PIN key arrives as a TR-31 block, built by openssl alone,
// under a KBPK two custodians' components form; `ceremony import-tr31`
// imports it while the vault serves; a PIN set with the Jiko guide's
// openssl flow is then verified from PIN blocks the test builds with its
// own ISO 9564-1 format 4 code and openssl's AES: match for the right
// PIN, no match otherwise, blocked after the try limit.
func TestVerifyPINWithZoneKeyFromTR31(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	jv := newServedVault(t, append(append([]string{}, pinScopes...), "cards:verify"), envKeyRefresh+"=200ms")
	const pan = "4000001234567899"
	card := jv.importCard(t, "acct-1", pan)
	if st, body := runPINFlow(t, jv, "acct-1", card, "2468"); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	verify := func(block []byte) response {
		return jv.post(t, jv.base+"/v1/cards/verify_pin", map[string]any{"card_id": card, "pin_block": hex.EncodeToString(block)}, nil)
	}
	zpk := randomKey(t)
	right := func() []byte { return openssltest.Format4PINBlock(t, zpk, "2468", pan) }
	wrong := func() []byte { return openssltest.Format4PINBlock(t, zpk, "2469", pan) }
	if r := verify(right()); r.status != 503 || !strings.Contains(r.body, "zone_key_version") {
		t.Fatalf("before any zone key: %d %s", r.status, r.body)
	}

	dir := t.TempDir()
	comps := [][]byte{randomKey(t), randomKey(t)}
	forms := []string{componentForm(t, dir, "alice", comps[0], opensslKCV(t, comps[0])), componentForm(t, dir, "bob", comps[1], opensslKCV(t, comps[1]))}
	kbpk := xorAll(comps...)
	importBlock := func(name, block string) (string, error) {
		path := filepath.Join(dir, name+".tr31")
		if err := os.WriteFile(path, []byte(block+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return jv.run(t, "ceremony", "import-tr31", "--purpose", "zpk", "--in", path, "--components", "2",
			"--component-file", forms[0], "--component-file", forms[1], "--transcript", filepath.Join(dir, name+".txt"))
	}
	for name, c := range map[string]struct{ block, want string }{
		"encrypt-only": {openssltest.Block(t, kbpk, "D0000P0AE00N0000", zpk), "mode of use E"},
		"a data key":   {openssltest.Block(t, kbpk, "D0000D0AD00N0000", zpk), "key usage D0"},
		"AES-128":      {openssltest.Block(t, kbpk, "D0000P0AD00N0000", zpk[:16]), "AES-128"},
		"another KBPK": {openssltest.Block(t, randomKey(t), "D0000P0AD00N0000", zpk), "does not verify under this KBPK"},
	} {
		if out, err := importBlock(name, c.block); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: %v, want a refusal saying %q:\n%s", name, err, c.want, out)
		}
	}
	out, err := importBlock("zpk", openssltest.Block(t, kbpk, "D0000P0AD00N0000", zpk))
	if err != nil {
		t.Fatalf("import-tr31: %v\n%s", err, out)
	}
	for _, want := range []string{"kbpk:     KCV " + opensslKCV(t, kbpk), "imported: zpk/v1  KCV " + opensslKCV(t, zpk), "component 2: custodian bob"} {
		if !strings.Contains(out, want) {
			t.Errorf("the transcript lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range [][]byte{zpk, kbpk, comps[0]} {
		if strings.Contains(strings.ToUpper(out), strings.ToUpper(hex.EncodeToString(secret))) {
			t.Fatal("a key or component reached the transcript")
		}
	}

	// The server finds the new key at its next key refresh (200 ms here).
	var r response
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = verify(right()); r.status != 503 {
			break
		}
	}
	for _, c := range []struct {
		name string
		r    response
		want string
	}{
		{"the right PIN", r, `"match"`},
		{"a wrong PIN", verify(wrong()), `"no_match"`},
		{"another PAN's block", verify(openssltest.Format4PINBlock(t, zpk, "2468", "4111111111111111")), `"no_match"`},
		{"a third wrong PIN", verify(wrong()), `"no_match"`},
		{"past the limit, the right PIN", verify(right()), `"blocked"`},
	} {
		if c.r.status != 200 || !strings.Contains(c.r.body, `"pin":`+c.want) {
			t.Errorf("%s: %d %s, want pin %s", c.name, c.r.status, c.r.body, c.want)
		}
	}
	if r := jv.post(t, jv.base+"/v1/cards/verify_pin", map[string]any{"card_id": card, "pin_block": "00"}, nil); r.status != 400 || !strings.Contains(r.body, "pin_block") {
		t.Errorf("a short block: %d %s", r.status, r.body)
	}
	if st, body := runPINFlow(t, jv, "acct-1", card, "1357"); st != "200" {
		t.Fatalf("a new PIN: %s %s", st, body)
	}
	if r := verify(openssltest.Format4PINBlock(t, zpk, "1357", pan)); !strings.Contains(r.body, `"pin":"match"`) {
		t.Errorf("a new PIN unblocks the card: %d %s", r.status, r.body)
	}
	metrics := jv.do(t, "GET", jv.base+"/metrics", nil, nil).body
	for _, want := range []string{`cardvault_card_verifications_total{answer="blocked",field="pin"} 1`, `cardvault_card_verifications_total{answer="match",field="pin"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
