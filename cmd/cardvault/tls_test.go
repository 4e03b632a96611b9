package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// pki makes a test CA, a server certificate for 127.0.0.1 and client
// certificates with openssl, and returns the directory.
func pki(t *testing.T, clients ...string) string {
	t.Helper()
	openssl := testenv.RequireCommand(t, "openssl")
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=cardvault test CA", "-days", "2")
	issue := func(name, subject, ext string) {
		os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600)
		run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", subject)
		run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", name+".pem", "-days", "2", "-extfile", name+".ext")
	}
	issue("server", "/CN=cardvault", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
	for _, c := range clients {
		issue(c, "/O=Acme/CN="+c, "extendedKeyUsage=clientAuth\n")
	}
	return dir
}

// TestServeTLSAndClientCertificates serves over TLS with client
// certificates required: curl with a mapped certificate gets the mapped
// scopes without a bearer token; an unmapped one still needs a token; no
// certificate, TLS 1.1 and a CBC suite are refused in the handshake.
func TestServeTLSAndClientCertificates(t *testing.T) {
	curl := testenv.RequireCommand(t, "curl")
	openssl := testenv.RequireCommand(t, "openssl")
	dir := pki(t, "platform", "stranger")
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "ops", "cards:write")
	subjects := filepath.Join(dir, "subjects")
	os.WriteFile(subjects, []byte("# who may call without a token\ncards:write,cards:read CN=platform,O=Acme\n"), 0o600)
	base, _ := startServer(t, v,
		envTLSCert+"="+filepath.Join(dir, "server.pem"), envTLSKey+"="+filepath.Join(dir, "server.key"),
		envTLSClientCA+"="+filepath.Join(dir, "ca.pem"), envTLSSubjects+"="+subjects)
	url := strings.Replace(base, "http://", "https://", 1)
	body := `{"owner_id":"acct-1","pan":"` + panFor(7) + `","cvv":"123","expiry_month":12,"expiry_year":` + time.Now().AddDate(2, 0, 0).Format("2006") + `,"name":"ADA LOVELACE"}`
	post := func(client string, header ...string) (string, error) {
		args := []string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", filepath.Join(dir, "ca.pem"),
			"-H", "Content-Type: application/json", "-d", body}
		if client != "" {
			args = append(args, "--cert", filepath.Join(dir, client+".pem"), "--key", filepath.Join(dir, client+".key"))
		}
		for _, h := range header {
			args = append(args, "-H", h)
		}
		out, err := exec.Command(curl, append(args, url+"/v1/cards")...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if got, err := post("platform"); err != nil || got != "201" {
		t.Fatalf("mapped client certificate, no token: %s %v", got, err)
	}
	if got, err := post("stranger"); err != nil || got != "401" {
		t.Fatalf("unmapped client certificate, no token: %s %v", got, err)
	}
	// The same PAN again: the token authenticates, the PAN conflicts.
	if got, err := post("stranger", "Authorization: Bearer "+token); err != nil || got != "409" {
		t.Fatalf("unmapped client certificate with a token: %s %v", got, err)
	}
	if got, err := post(""); err == nil {
		t.Fatalf("no client certificate was let through: %s", got)
	}
	addr := strings.TrimPrefix(url, "https://")
	for name, args := range map[string][]string{
		"TLS 1.1":        {"-tls1_1"},
		"TLS 1.2 CBC":    {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"},
		"TLS 1.2 no PFS": {"-tls1_2", "-cipher", "AES128-GCM-SHA256"},
	} {
		cmd := exec.Command(openssl, append([]string{"s_client", "-connect", addr, "-CAfile", filepath.Join(dir, "ca.pem"),
			"-cert", filepath.Join(dir, "platform.pem"), "-key", filepath.Join(dir, "platform.key")}, args...)...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: handshake succeeded:\n%.600s", name, out)
		}
	}
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-tls1_3", "-CAfile", filepath.Join(dir, "ca.pem"),
		"-cert", filepath.Join(dir, "platform.pem"), "-key", filepath.Join(dir, "platform.key"))
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		t.Errorf("TLS 1.3 with a client certificate: %v\n%.600s", err, out)
	}
}

func TestTLSConfigIsValidated(t *testing.T) {
	v := newVaultEnv(t)
	for name, c := range map[string]struct {
		env  []string
		want string
	}{
		"cert without key":      {[]string{envTLSCert + "=/nonexistent"}, "TLS needs both " + envTLSCert + " and " + envTLSKey},
		"subjects without a CA": {[]string{envTLSCert + "=a", envTLSKey + "=b", envTLSSubjects + "=c"}, envTLSSubjects + " maps client certificates, which need " + envTLSClientCA},
		"unreadable key pair":   {[]string{envTLSCert + "=/nonexistent", envTLSKey + "=/nonexistent"}, envTLSCert + "/" + envTLSKey},
	} {
		t.Run(name, func(t *testing.T) {
			e := *v
			e.env = append(append([]string{}, v.env...), c.env...)
			os.WriteFile(filepath.Join(v.dir, "api-tokens"), nil, 0o600)
			out, err := e.run(t, "serve")
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("serve: err=%v, want %q in:\n%s", err, c.want, out)
			}
		})
	}
}
