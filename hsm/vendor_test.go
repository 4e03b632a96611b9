package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cardvault/cardvault/internal/testsupport/p11test"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/softhsm"
	"github.com/miekg/pkcs11"
)

// The behaviours production HSMs document, injected into real SoftHSM2
// tokens: missing mechanisms through SoftHSM2's own allow-list (the token
// then neither lists nor performs them), GCM IV handling through the
// adapter's seam (gcmVendorP11).

// vendorToken is a fresh SoftHSM2 token offering the mechanisms the vault
// knows of, less drop.
func vendorToken(t *testing.T, drop ...string) *softhsm.Token {
	t.Helper()
	tok := softhsm.TestToken(t)
	if err := p11test.WithoutMechanisms(tok.Conf, drop...); err != nil {
		t.Fatal(err)
	}
	return tok
}

// gcmVendorP11 stands in for a token's handling of the caller's AES-GCM
// IV: "overwritten" draws its own IV and writes it back into the
// parameters (AWS CloudHSM); "refused" answers CKR_MECHANISM_PARAM_INVALID
// to a caller's IV and fills a zeroed buffer (FIPS-mode modules). It
// replaces the IV in the parameters before the real C_EncryptInit, so
// SoftHSM2 encrypts under the IV the stand-in drew and reports it. It also
// counts the RSA decryptions.
type gcmVendorP11 struct {
	p11
	mode       string
	drawn      atomic.Int32
	rsaDecrypt atomic.Int32
}

func (g *gcmVendorP11) EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, key pkcs11.ObjectHandle) error {
	if g.mode != "" && len(m) == 1 && m[0].Mechanism == pkcs11.CKM_AES_GCM {
		gen := reflect.ValueOf(m[0]).Elem().FieldByName("generator")
		params := (*pkcs11.GCMParams)(gen.Elem().UnsafePointer())
		field := reflect.ValueOf(params).Elem().FieldByName("iv")
		iv := (*[]byte)(unsafe.Pointer(field.UnsafeAddr()))
		if g.mode == "refused" && slices.ContainsFunc(*iv, func(b byte) bool { return b != 0 }) {
			return pkcs11.Error(pkcs11.CKR_MECHANISM_PARAM_INVALID)
		}
		// A new slice, as the token's own memory would be: the caller's
		// copy of the IV it offered stays as it was.
		drawn := make([]byte, len(*iv))
		if _, err := rand.Read(drawn); err != nil {
			return err
		}
		*iv = drawn
		g.drawn.Add(1)
	}
	return g.p11.EncryptInit(sh, m, key)
}

func (g *gcmVendorP11) DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, key pkcs11.ObjectHandle) error {
	if len(m) == 1 && (m[0].Mechanism == pkcs11.CKM_RSA_X_509 || m[0].Mechanism == pkcs11.CKM_RSA_PKCS || m[0].Mechanism == pkcs11.CKM_RSA_PKCS_OAEP) {
		g.rsaDecrypt.Add(1)
	}
	return g.p11.DecryptInit(sh, m, key)
}

// openVendor opens a vendor token through gcmVendorP11 in ivMode.
func openVendor(t *testing.T, tok *softhsm.Token, ivMode, profile string) (*Module, *gcmVendorP11) {
	t.Helper()
	var g *gcmVendorP11
	m, err := openWith(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Profile: profile,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))},
		func(p p11) p11 {
			g = &gcmVendorP11{p11: p, mode: ivMode}
			return g
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, g
}

// vendorCase is one documented behaviour and the profile settings it must
// produce.
type vendorCase struct {
	name   string
	drop   []string
	ivMode string
	want   string // profile settings, as Name prints them
}

var vendorCases = []vendorCase{
	{"SoftHSM2 as it is", nil, "", "gcm-iv=honoured,raw-rsa=yes,oaep-sha256=raw,kcv=cmac,wrap=pad"},
	{"IV overwritten (cloud HSM)", nil, "overwritten", "gcm-iv=overwritten"},
	{"IV refused (FIPS mode)", nil, "refused", "gcm-iv=refused"},
	// SoftHSM2 2.6.1 also refuses OAEP with SHA-256, so without raw RSA
	// the Solaris PIN route has no path.
	{"no raw RSA (FIPS mode)", []string{"CKM_RSA_X_509"}, "", "raw-rsa=no,oaep-sha256=none"},
	{"no CMAC", []string{"CKM_AES_CMAC"}, "", "kcv=ecb"},
	{"no key wrap with padding", []string{"CKM_AES_KEY_WRAP_PAD"}, "", "wrap=plain"},
	{"no key wrap at all", []string{"CKM_AES_KEY_WRAP_PAD", "CKM_AES_KEY_WRAP"}, "", "wrap=none"},
}

// TestVendorBehaviours runs every path that differs between tokens under
// each injected behaviour: the probe must name it, and sealing, the PIN
// paths, KCVs and backups must work or refuse as docs/hsm.md says.
func TestVendorBehaviours(t *testing.T) {
	openssl := testenv.RequireCommand(t, "openssl")
	pinKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pekValue, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	for _, tc := range vendorCases {
		t.Run(tc.name, func(t *testing.T) {
			tok := vendorToken(t, tc.drop...)
			ctx := context.Background()
			m, g := openVendor(t, tok, tc.ivMode, "")
			if err := m.SetKeyBackup(BackupByWrap); (err != nil) != strings.Contains(tc.want, "wrap=none") {
				t.Fatalf("backup by wrap: %v", err)
			}
			if err := m.Generate(ctx, CardKEK, 1); err != nil {
				t.Fatal(err)
			}
			if err := m.ImportSecret(ctx, PEK, 1, pekValue); err != nil {
				t.Fatal(err)
			}
			importRSAKey(t, m, 1, pinKey)
			// The profile is probed when the connection is made; reopen
			// so the OAEP trial finds the set_pin key.
			m.Close()
			m, g = openVendor(t, tok, tc.ivMode, "")
			p, err := m.Profile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, setting := range strings.Split(tc.want, ",") {
				if !slices.Contains(strings.Split(p.Name(), ","), setting) {
					t.Errorf("profile %s, want %s", p.Name(), setting)
				}
			}
			t.Logf("profile: %s", p.Name())

			checkSealing(t, m, g, tc.ivMode)
			checkPINPaths(t, m, g, pinKey, p)
			checkKCV(t, openssl, m, pekValue, p.KCV)
			checkBackup(t, m, tok, p.Wrap)
		})
	}
}

// checkSealing seals three records and opens them; the IVs the records
// keep are the token's and all differ.
func checkSealing(t *testing.T, m *Module, g *gcmVendorP11, ivMode string) {
	t.Helper()
	ctx := context.Background()
	ivs := map[string]bool{}
	for i := 0; i < 3; i++ {
		sealed, _, err := m.Seal(ctx, []byte("aad"), []byte("4111111111111111"))
		if err != nil {
			t.Fatalf("seal: %v", err)
		}
		ivs[string(sealed[sealHeaderLen:sealHeaderLen+gcmIVLen])] = true
		if got, err := m.Open(ctx, []byte("aad"), sealed); err != nil || string(got) != "4111111111111111" {
			t.Fatalf("open: %q, %v", got, err)
		}
	}
	if len(ivs) != 3 {
		t.Errorf("3 records kept %d distinct IVs", len(ivs))
	}
	if ivMode != "" && g.drawn.Load() < 3 {
		t.Errorf("the stand-in drew %d IVs for 3 seals", g.drawn.Load())
	}
}

// decodeEM is a plain (variable-time) PKCS#1 v1.5 type 2 decoder, the
// reference the constant-time one in vault must agree with.
func decodeEM(em []byte) ([]byte, bool) {
	if len(em) < 11 || em[0] != 0 || em[1] != 2 {
		return nil, false
	}
	i := bytes.IndexByte(em[2:], 0)
	if i < 8 {
		return nil, false
	}
	return em[2+i+1:], true
}

// checkPINPaths decrypts a PIN ciphertext, a bad one and a JWE's wrapped
// key: each PIN ciphertext costs exactly one RSA decryption in the token,
// on either path, and OAEP-SHA256 works where the profile has a path.
func checkPINPaths(t *testing.T, m *Module, g *gcmVendorP11, key *rsa.PrivateKey, p Profile) {
	t.Helper()
	ctx := context.Background()
	good, _ := rsa.EncryptPKCS1v15(rand.Reader, &key.PublicKey, []byte("1357\n"))
	bad := make([]byte, len(good))
	copy(bad, good)
	bad[10] ^= 0x40
	for _, c := range []struct {
		name string
		ct   []byte
		want string
	}{{"a PIN", good, "1357\n"}, {"a corrupt ciphertext", bad, ""}, {"zeros", make([]byte, len(good)), ""}} {
		before := g.rsaDecrypt.Load()
		em, err := m.SetPINDecryptPKCS1(ctx, 1, c.ct)
		if calls := g.rsaDecrypt.Load() - before; calls != 1 {
			t.Errorf("%s: %d RSA decryptions in the token, want 1", c.name, calls)
		}
		msg, ok := decodeEM(em)
		switch {
		case c.want != "" && (err != nil || !ok || string(msg) != c.want):
			t.Errorf("%s: %q %v %v", c.name, msg, ok, err)
		case c.want == "" && err != ErrCrypto && (ok && len(msg) == 5):
			t.Errorf("%s decoded as %q", c.name, msg)
		case c.want == "" && err != nil && err != ErrCrypto:
			t.Errorf("%s: %v, want ErrCrypto or an invalid message", c.name, err)
		}
	}
	secret := []byte("a JWE's content encryption key..")
	wrapped, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &key.PublicKey, secret, nil)
	got, err := m.SetPINDecryptOAEP(ctx, 1, wrapped)
	if p.OAEPSHA256 == "none" {
		if !errors.Is(err, ErrNoOAEPSHA256) {
			t.Errorf("OAEP-SHA256 without a path: %v, want ErrNoOAEPSHA256", err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("OAEP-SHA256 (%s): %q %v", p.OAEPSHA256, got, err)
	}
}

// checkKCV compares the PEK's KCV with OpenSSL's by the method the
// profile names, and with the KCV of its clear value.
func checkKCV(t *testing.T, openssl string, m *Module, value []byte, method string) {
	t.Helper()
	ctx := context.Background()
	got, err := m.KCV(ctx, PEK, 1)
	if err != nil {
		t.Fatal(err)
	}
	args := map[string][]string{
		"cmac": {"mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:" + hex.EncodeToString(value), "CMAC"},
		"ecb":  {"enc", "-aes-256-ecb", "-nopad", "-K", hex.EncodeToString(value)},
	}[method]
	cmd := exec.Command(openssl, args...)
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v", args[:2], err)
	}
	want := strings.ToUpper(strings.TrimSpace(string(out)))
	if method == "ecb" {
		want = fmt.Sprintf("%X", out)
	}
	wantMethod := map[string]string{"cmac": "AES-CMAC", "ecb": "AES-ECB"}[method]
	if got.Value != want[:6] || got.Method != wantMethod {
		t.Errorf("KCV %s, openssl %s gives %s", got, wantMethod, want[:6])
	}
	if v, err := m.ValueKCV(ctx, KindAES, value); err != nil || v != got {
		t.Errorf("the clear value's KCV %s (%v), the key's %s", v, err, got)
	}
}

// checkBackup exports the keys (made for backup by wrap where the token
// can wrap): with padding everything goes; with RFC 3394 only the secrets
// can, so the set_pin private key is refused by name; with no wrap
// mechanism the export refuses, naming both.
func checkBackup(t *testing.T, m *Module, tok *softhsm.Token, wrap string) {
	t.Helper()
	kek := bytes.Repeat([]byte{7}, 32)
	b, err := m.Export(context.Background(), tok.SOPIN, kek)
	switch wrap {
	case "pad":
		if err != nil || b.Mechanism != "CKM_AES_KEY_WRAP_PAD" {
			t.Fatalf("export: %v", err)
		}
	case "plain":
		if err == nil || !strings.Contains(err.Error(), "set-pin/v1 is an RSA private key") || !strings.Contains(err.Error(), "CKM_AES_KEY_WRAP_PAD") {
			t.Fatalf("export with RFC 3394 only: %v", err)
		}
	case "none":
		if err == nil || !strings.Contains(err.Error(), "neither CKM_AES_KEY_WRAP_PAD nor CKM_AES_KEY_WRAP") {
			t.Fatalf("export without key wrap: %v", err)
		}
	}
}

// TestBackupWithRFC3394 moves secret keys between two tokens that offer
// only CKM_AES_KEY_WRAP: the backup says so, and every key checks.
func TestBackupWithRFC3394(t *testing.T) {
	ctx := context.Background()
	from := vendorToken(t, "CKM_AES_KEY_WRAP_PAD")
	m, _ := openVendor(t, from, "", "")
	if err := m.SetKeyBackup(BackupByWrap); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Purpose{CardKEK, PANHMAC, PEK, Audit} {
		if err := m.Generate(ctx, p, 1); err != nil {
			t.Fatal(err)
		}
	}
	kek := bytes.Repeat([]byte{9}, 32)
	b, err := m.Export(ctx, from.SOPIN, kek)
	if err != nil {
		t.Fatal(err)
	}
	if b.Mechanism != "CKM_AES_KEY_WRAP" || len(b.Keys) != 4 {
		t.Fatalf("backup by %s of %d keys", b.Mechanism, len(b.Keys))
	}
	sealed, _, err := m.Seal(ctx, []byte("aad"), []byte("4111111111111111"))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	to := vendorToken(t, "CKM_AES_KEY_WRAP_PAD")
	n, _ := openVendor(t, to, "", "")
	if err := n.Import(ctx, kek, b); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Open(ctx, []byte("aad"), sealed); err != nil || string(got) != "4111111111111111" {
		t.Fatalf("a record sealed before the backup, opened after its import: %q %v", got, err)
	}
}

// Keys made for backup by the vendor (the default) are never extractable:
// export refuses, by the key's name, before anything is wrapped.
func TestExportRefusesNeverExtractableKeys(t *testing.T) {
	tok := vendorToken(t)
	m, _ := openVendor(t, tok, "", "")
	if err := m.Generate(context.Background(), CardKEK, 1); err != nil {
		t.Fatal(err)
	}
	_, err := m.Export(context.Background(), tok.SOPIN, bytes.Repeat([]byte{7}, 32))
	if err == nil || !strings.Contains(err.Error(), "card-kek/v1 (secret) is never extractable") {
		t.Fatalf("export of a never-extractable key: %v", err)
	}
}

// TestRecordsOpenUnderEveryIVBehaviour seals a record under each GCM IV
// behaviour, then opens every one of them under every behaviour: the
// record keeps the IV the token used, so a token (or a profile) change
// loses nothing.
func TestRecordsOpenUnderEveryIVBehaviour(t *testing.T) {
	ctx := context.Background()
	tok := vendorToken(t)
	modes := []string{"", "overwritten", "refused"}
	records := map[string][]byte{}
	for i, mode := range modes {
		m, _ := openVendor(t, tok, mode, "")
		if i == 0 {
			if err := m.Generate(ctx, CardKEK, 1); err != nil {
				t.Fatal(err)
			}
		}
		sealed, _, err := m.Seal(ctx, []byte("aad"), []byte("sealed when the IV was "+mode))
		if err != nil {
			t.Fatalf("seal (%q): %v", mode, err)
		}
		records[mode] = sealed
		m.Close()
	}
	for _, mode := range modes {
		m, _ := openVendor(t, tok, mode, "")
		for sealedUnder, sealed := range records {
			got, err := m.Open(ctx, []byte("aad"), sealed)
			if err != nil || string(got) != "sealed when the IV was "+sealedUnder {
				t.Errorf("a record sealed with the IV %q, opened with it %q: %q %v", sealedUnder, mode, got, err)
			}
		}
		m.Close()
	}
	t.Logf("%d records, each sealed under one IV behaviour, opened under all %d", len(records), len(modes))
}

// A forced gcm-iv=refused on a token that honours the caller's IV would
// seal every record under the zero IV the vault offers: the seal must
// refuse instead.
func TestSealRefusesAZeroIV(t *testing.T) {
	tok := vendorToken(t)
	m, _ := openVendor(t, tok, "", "gcm-iv=refused")
	ctx := context.Background()
	if err := m.Generate(ctx, CardKEK, 1); err != nil {
		t.Fatal(err)
	}
	if sealed, _, err := m.Seal(ctx, []byte("aad"), []byte("4111111111111111")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a seal under a zero IV: %x, %v", sealed, err)
	}
}

// A token without AES-GCM is refused at start-up, by the mechanism's name.
func TestOpenRefusesATokenWithoutGCM(t *testing.T) {
	tok := vendorToken(t, "CKM_AES_GCM")
	_, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err == nil || !strings.Contains(err.Error(), "does not offer CKM_AES_GCM") {
		t.Fatalf("open without AES-GCM: %v", err)
	}
}

// A forced profile overrides the probe, and a bad one is refused by name.
func TestForcedProfile(t *testing.T) {
	tok := vendorToken(t)
	m, _ := openVendor(t, tok, "", "raw-rsa=no,kcv=ecb")
	p, err := m.Profile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.RawRSA != "no" || p.KCV != "ecb" || !slices.Equal(p.Forced, []string{"raw-rsa", "kcv"}) {
		t.Fatalf("forced profile: %s, forced %v", p.Name(), p.Forced)
	}
	for _, bad := range []string{"gcm-iv=maybe", "trusted-wrap=ignored", "oaep-sha256=untried", "kcv"} {
		if _, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Profile: bad}); err == nil || !strings.Contains(err.Error(), "hsm profile") {
			t.Errorf("profile %q: %v", bad, err)
		}
	}
}

// The mechanism list the vendor tokens are restricted from names every
// mechanism the vault requires or probes for.
func TestVaultMechanismsCoverTheProfile(t *testing.T) {
	for _, m := range requiredMechanisms {
		if !slices.Contains(p11test.VaultMechanisms, m.name) {
			t.Errorf("p11test.VaultMechanisms lacks %s", m.name)
		}
	}
	for _, m := range profileMechanisms {
		if !slices.Contains(p11test.VaultMechanisms, m.name) {
			t.Errorf("p11test.VaultMechanisms lacks %s", m.name)
		}
	}
}
