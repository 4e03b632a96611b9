package main

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/p11test"
)

// A token without raw RSA, whose OAEP does not take SHA-256 (SoftHSM2
// 2.6.1's does not), has no path for the Solaris PIN JWE (RSA-OAEP-256):
// that route answers 503 naming the mechanisms, /readyz says so and stays
// ready, and the Jiko PIN route (CKM_RSA_PKCS in the token) still serves
// with its one answer for every unusable PIN.
func TestPINRoutesOnATokenWithoutRawRSA(t *testing.T) {
	v := newVaultEnv(t)
	if err := p11test.WithoutMechanisms(v.tok.Conf, "CKM_RSA_X_509"); err != nil {
		t.Fatal(err)
	}
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	out, err := v.run(t, "hsm", "probe")
	if err != nil || !strings.Contains(out, "raw-rsa=no") || !strings.Contains(out, "oaep-sha256=none") || !regexp.MustCompile(`(?m)^CKM_RSA_X_509:\s+MISSING$`).MatchString(out) {
		t.Fatalf("hsm probe: %v\n%s", err, out)
	}
	t.Logf("cardvault hsm probe on a SoftHSM2 token without CKM_RSA_X_509:\n%s", out)
	token := v.token(t, "platform", pinScopes...)
	base, logs := startServer(t, v, envPINPerCard+"=20")
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}

	r := jv.do(t, "GET", base+"/readyz", nil, nil)
	if r.status != 200 || !strings.Contains(r.body, "CKM_RSA_PKCS_OAEP") || !strings.Contains(r.body, `"ready":true`) {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}

	_, card := orderPhysicalCard(t, jv, "acct-1")
	var refusals []string
	for _, pin := range []string{"1234", "98a7", "13579"} {
		st, body := runPINFlow(t, jv, "acct-1", card, pin)
		refusals = append(refusals, st+" "+body)
	}
	for _, r := range refusals {
		if r != refusals[0] || !strings.HasPrefix(r, "422 ") {
			t.Fatalf("refusals on the CKM_RSA_PKCS path differ or are wrong:\n%s", strings.Join(refusals, "\n"))
		}
	}
	if st, body := runPINFlow(t, jv, "acct-1", card, "1357"); st != "200" {
		t.Fatalf("a Jiko PIN on the CKM_RSA_PKCS path: %s %s", st, body)
	}

	person := "person-1"
	_, physical := orderPhysicalCard(t, jv, person)
	results := runSolarisPIN(t, jv, person, physical, []map[string]any{{"pin": "2468"}})
	if results[0][0].(float64) != 503 || !strings.Contains(results[0][1].(string), "CKM_RSA_PKCS_OAEP") || !strings.Contains(results[0][1].(string), "CKM_RSA_X_509") {
		t.Fatalf("a Solaris PIN without an OAEP-SHA256 path: %v %s", results[0][0], results[0][1])
	}
}

// The token and its PIN file named by one RFC 7512 URI, in place of the
// module, label and PIN file variables; with both, the vault refuses to
// guess which is meant.
func TestPKCS11URISelectsTheToken(t *testing.T) {
	v := newVaultEnv(t)
	pinFile := filepath.Join(v.dir, "pin")
	uri := "pkcs11:token=" + url.PathEscape(v.tok.Label) + "?module-path=" + v.tok.Module + "&pin-source=file:" + pinFile
	var env []string
	for _, e := range v.env {
		if !strings.HasPrefix(e, envModule+"=") && !strings.HasPrefix(e, envTokenLabel+"=") && !strings.HasPrefix(e, envPINFile+"=") {
			env = append(env, e)
		}
	}
	v.env = append(env, envPKCS11URI+"="+uri)
	out, err := v.run(t, "hsm", "probe")
	if err != nil || !strings.Contains(out, "token:                 "+v.tok.Label) {
		t.Fatalf("hsm probe by URI: %v\n%s", err, out)
	}
	v.env = append(v.env, envTokenLabel+"=cardvault")
	if out, err := v.run(t, "hsm", "probe"); err == nil || !strings.Contains(out, envPKCS11URI+" and "+envTokenLabel+" are both set") {
		t.Fatalf("URI and label: %v\n%s", err, out)
	}
}

// A token without CKM_AES_CMAC checks AES keys by the legacy ECB KCV: the
// ceremonies print and record it by that method, the server accepts the
// keys the catalog recorded so, and a rotated card KEK seals and reveals.
func TestCeremoniesOnATokenWithoutCMAC(t *testing.T) {
	v := newVaultEnv(t)
	if err := p11test.WithoutMechanisms(v.tok.Conf, "CKM_AES_CMAC"); err != nil {
		t.Fatal(err)
	}
	out, err := v.run(t, "ceremony", "init")
	if err != nil || !regexp.MustCompile(`card-kek/v1\s+1\s+AES-256\s+KCV [0-9A-F]{6} \(AES-ECB\)`).MatchString(out) || !strings.Contains(out, "kcv=ecb") {
		t.Fatalf("init without CMAC: %v\n%s", err, out)
	}
	if out, err := v.run(t, "ceremony", "rotate", "--purpose", "card-kek"); err != nil || !strings.Contains(out, "(AES-ECB)") {
		t.Fatalf("rotate without CMAC: %v\n%s", err, out)
	}
	list, err := v.run(t, "ceremony", "list")
	if err != nil || strings.Contains(list, "REJECTED") || !strings.Contains(list, "profile: gcm-iv=honoured,raw-rsa=yes,oaep-sha256=raw,kcv=ecb,") {
		t.Fatalf("list without CMAC: %v\n%s", err, list)
	}
	token := v.token(t, "platform", solarisScopes...)
	base, logs := startServer(t, v)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
	card := jv.importCard(t, "person-1", "4000001234567899")
	viewer := newViewer(t, jv, "person-1")
	viewer.prepare(t, 1)
	if got, err := viewer.reveal(t, card); err != nil || got != "4000001234567899" {
		t.Fatalf("secure view under card-kek/v2, checked by ECB: %q, %v", mask(got), err)
	}
}
