package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/nsstoken"
)

// newNSSVaultEnv is newVaultEnv on a fresh NSS softokn database: the same
// binary, another PKCS#11 implementation.
func newNSSVaultEnv(t *testing.T) *vaultEnv {
	t.Helper()
	tok := nsstoken.New(t)
	return tokenVaultEnv(t, tok.Module, nsstoken.Label, tok.PIN, tok.Env...)
}

// TestEndToEndOnNSSSoftokn runs the key ceremony, Jiko's virtual card
// create and read, an import and its secure view, and the guide's PIN set
// with openssl on NSS softokn, through the real binary. NSS differs from
// SoftHSM2 where it counts: it refuses CKA_COPYABLE on token keys, and it
// answers an AES-GCM length query without the tag.
func TestEndToEndOnNSSSoftokn(t *testing.T) {
	v := newNSSVaultEnv(t)
	out, err := v.run(t, "ceremony", "init")
	if err != nil || !strings.Contains(out, "result: created 5 key(s)") || !strings.Contains(out, "NSS Certificate DB") {
		t.Fatalf("init on NSS: %v\n%s", err, out)
	}
	list, err := v.run(t, "ceremony", "list")
	if err != nil || strings.Contains(list, "REJECTED") || strings.Count(list, "recorded") != 6 {
		t.Fatalf("list on NSS: %v\n%s", err, list)
	}
	token := v.token(t, "platform", pinScopes...)
	base, logs := startServer(t, v)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}

	if r := jv.do(t, "GET", base+"/readyz", nil, nil); r.status != 200 {
		t.Fatalf("readyz on NSS: %d %s", r.status, r.body)
	}
	cards := jikoCreateAndRead(t, jv, "nss-jiko", 1)
	if len(cards[0].pan) != 16 || !luhn(cards[0].pan) {
		t.Fatalf("Jiko card on NSS: %+v", cards[0])
	}
	card := jv.importCard(t, "nss-person", "4000001234567899")
	viewer := newViewer(t, jv, "nss-person")
	viewer.prepare(t, 1)
	if got, err := viewer.reveal(t, card); err != nil || got != "4000001234567899" {
		t.Fatalf("secure view on NSS: %q, %v", mask(got), err)
	}
	_, physical := orderPhysicalCard(t, jv, "nss-acct")
	if st, body := runPINFlow(t, jv, "nss-acct", physical, "2580"); st != "200" {
		t.Fatalf("PIN set on NSS: %s %s", st, body)
	}
	if st, body := runPINFlow(t, jv, "nss-acct", physical, "1234"); st != "422" {
		t.Fatalf("a weak PIN on NSS: %s %s", st, body)
	}
}

// TestHSMProbeOnBothImplementations prints each token's profile: SoftHSM2
// honours the caller's GCM IV and enforces CKA_WRAP_WITH_TRUSTED; NSS
// softokn honours the IV and wraps any key under a user key.
func TestHSMProbeOnBothImplementations(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(*testing.T) *vaultEnv
		want []string
	}{
		{"SoftHSM2", newVaultEnv, []string{"profile: gcm-iv=honoured,raw-rsa=yes,oaep-sha256=raw,kcv=cmac,wrap=pad,trusted-wrap=enforced,copyable=untried", "CKM_AES_KEY_WRAP_PAD:  listed"}},
		{"NSS softokn", newNSSVaultEnv, []string{"profile: gcm-iv=honoured,raw-rsa=yes,oaep-sha256=token,kcv=cmac,wrap=pad,trusted-wrap=ignored,copyable=untried", "NSS 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// After the keys are made, so that the OAEP trial has a
			// set_pin key to run on.
			v := tc.env(t)
			if out, err := v.run(t, "ceremony", "init"); err != nil {
				t.Fatalf("init: %v\n%s", err, out)
			}
			out, err := v.run(t, "hsm", "probe")
			if err != nil {
				t.Fatalf("hsm probe: %v\n%s", err, out)
			}
			t.Logf("cardvault hsm probe on %s:\n%s", tc.name, out)
			for _, want := range tc.want {
				if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
					t.Errorf("probe output lacks %q", want)
				}
			}
		})
	}
}

// The backup ceremonies cannot work on NSS softokn, which wraps any key
// under any key the user makes (and has no security officer to trust a
// wrapping key): they refuse, saying why, and nothing is written.
func TestBackupCeremoniesOnNSSSayWhy(t *testing.T) {
	v := newNSSVaultEnv(t)
	out, err := v.run(t, "ceremony", "init", "--backup", "wrap")
	if err == nil || !strings.Contains(out, "--backup wrap: hsm: the token ignores CKA_WRAP_WITH_TRUSTED") {
		t.Fatalf("init --backup wrap on NSS: %v\n%s", err, out)
	}
	if out, err := v.run(t, "ceremony", "init"); err != nil || !strings.Contains(out, "backup:   vendor") {
		t.Fatalf("init on NSS: %v\n%s", err, out)
	}
	dir := t.TempDir()
	c1, c2 := randomKey(t), randomKey(t)
	backup := filepath.Join(dir, "backup.json")
	v.env = append(v.env, envSOPIN+"=no-security-officer-on-nss")
	out, err = v.run(t, "ceremony", "export", "--out", backup, "--components", "2",
		"--component-file", componentForm(t, dir, "alice", c1, opensslKCV(t, c1)),
		"--component-file", componentForm(t, dir, "bob", c2, opensslKCV(t, c2)))
	if err == nil || !strings.Contains(out, "is never extractable; back it up with the vendor's cloning or replication") {
		t.Fatalf("export on NSS: %v\n%s", err, out)
	}
	if _, err := os.Stat(backup); err == nil {
		t.Fatal("a refused export wrote a backup file")
	}
}
