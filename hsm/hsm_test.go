package hsm

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/softhsm"
	"github.com/miekg/pkcs11"
)

func TestHMACMatchesIndependentComputation(t *testing.T) {
	m, _ := openTestModule(t)
	ctx := context.Background()
	key := bytes.Repeat([]byte{0x5a}, 32)
	if err := m.ImportSecret(ctx, PANHMAC, 1, key); err != nil {
		t.Fatal(err)
	}
	data := []byte("4000056655665556")
	got, v, err := m.MAC(ctx, PANHMAC, data)
	if err != nil {
		t.Fatal(err)
	}
	want := hmac.New(sha256.New, key)
	want.Write(data)
	if v != 1 || !bytes.Equal(got, want.Sum(nil)) {
		t.Fatalf("MAC = %x (v%d), want %x (v1)", got, v, want.Sum(nil))
	}
	if _, _, err := m.MAC(ctx, CardKEK, data); err == nil {
		t.Fatal("MAC with an AES purpose succeeded")
	}
}

func TestKCVMatchesOpenSSL(t *testing.T) {
	openssl := testenv.RequireCommand(t, "openssl")
	m, _ := openTestModule(t)
	ctx := context.Background()
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	if err := m.ImportSecret(ctx, PEK, 1, key); err != nil {
		t.Fatal(err)
	}
	got, err := m.KCV(ctx, PEK, 1)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(openssl, "mac", "-cipher", "AES-256-CBC", "-macopt", "hexkey:"+hex.EncodeToString(key), "CMAC")
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl mac: %v", err)
	}
	want := CheckValue{strings.ToUpper(strings.TrimSpace(string(out))[:6]), "AES-CMAC"}
	if got != want {
		t.Fatalf("KCV = %s, openssl CMAC gives %s", got, want)
	}
}

// TestKeysLeaveOnlyWrappedByATrustedKey: no key's value can be read, and
// a wrapping key the user makes (which cannot be trusted) cannot wrap one:
// keys backed up by the vendor are not extractable at all; keys backed up
// by wrap are refused as not wrappable under it. A token that ignores
// CKA_WRAP_WITH_TRUSTED (NSS softokn) refuses backup by wrap.
func TestKeysLeaveOnlyWrappedByATrustedKey(t *testing.T) {
	for _, backup := range []KeyBackup{BackupByVendor, BackupByWrap} {
		t.Run(backup.String(), func(t *testing.T) { keysLeaveOnlyWrapped(t, backup) })
	}
}

func keysLeaveOnlyWrapped(t *testing.T, backup KeyBackup) {
	pkcs11Tool := testenv.RequireCommand(t, "pkcs11-tool")
	m, tok := openTestModule(t)
	ctx := context.Background()
	err := m.SetKeyBackup(backup)
	switch {
	case onNSS() && backup == BackupByWrap:
		if err == nil || !strings.Contains(err.Error(), "ignores CKA_WRAP_WITH_TRUSTED") {
			t.Fatalf("backup by wrap on NSS: %v", err)
		}
		return
	case err != nil:
		t.Fatal(err)
	}
	for _, p := range Purposes {
		if err := m.Generate(ctx, p, 1); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 6 { // four secrets and the set_pin pair
		t.Fatalf("catalog has %d objects, want 6: %+v", len(keys), keys)
	}
	c, _ := m.current()
	for _, k := range keys {
		if k.Class == "public" {
			continue
		}
		if !k.Sensitive || !k.WrapWithTrusted {
			t.Errorf("%s: sensitive=%v wrap-with-trusted=%v", k.Label, k.Sensitive, k.WrapWithTrusted)

		}
		err := c.withSession(func(sh pkcs11.SessionHandle) error {
			class := uint(classSecret)
			if k.Class == "private" {
				class = classPrivate
			}
			h, err := c.handle(sh, k.Label, class)
			if err != nil {
				return err
			}
			attr := uint(pkcs11.CKA_VALUE)
			if class == classPrivate {
				attr = pkcs11.CKA_PRIVATE_EXPONENT
			}
			v, err := c.p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(attr, nil)})
			if err == nil {
				return fmt.Errorf("read %d bytes of key material", len(v[0].Value))
			}
			if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
				return fmt.Errorf("reading key material failed with %v, want CKR_ATTRIBUTE_SENSITIVE", err)
			}
			// The user may make a wrapping key, but not a trusted one.
			wk, err := c.p.CreateObject(sh, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)),
			})
			if err != nil {
				return err
			}
			defer c.p.DestroyObject(sh, wk)
			wrapped, err := c.p.WrapKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, wk, h)
			if onNSS() {
				// NSS softokn wraps any key under any key the user makes
				// (README): the vault must have noticed and made the key
				// never extractable, the most it can ask of such a token.
				if !c.untrustedWrap || k.Extractable {
					return fmt.Errorf("on NSS: untrusted-wrap noticed %v, key extractable %v", c.untrustedWrap, k.Extractable)
				}
				return nil
			}
			want := pkcs11.Error(pkcs11.CKR_KEY_NOT_WRAPPABLE)
			if backup == BackupByVendor {
				want = pkcs11.CKR_KEY_UNEXTRACTABLE
			}
			if k.Extractable != (backup == BackupByWrap) || !errors.Is(err, want) {
				return fmt.Errorf("extractable %v; wrapping under an untrusted key gave %d bytes and %v, want %v", k.Extractable, len(wrapped), err, want)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", k.Label, err)
		}
		typ := "secrkey"
		if k.Class == "private" {
			typ = "privkey"
		}
		cmd := exec.Command(pkcs11Tool, "--module", tok.Module, "--token-label", tok.Label,
			"--login", "--pin", tok.PIN, "--read-object", "--type", typ, "--label", k.Label)
		cmd.Env = append(os.Environ(), tok.Env...)
		out, err := cmd.CombinedOutput()
		// pkcs11-tool exits 1 for a sensitive secret key, and for a private
		// key declines with exit 0 and a message; either way no key bytes.
		refused := err != nil || strings.Contains(string(out), "not (yet) supported")
		if !refused || len(out) > 200 {
			t.Errorf("pkcs11-tool --read-object %s: err=%v, printed %d bytes: %q", k.Label, err, len(out), out)
		}
	}
}

func TestOpenRefusesWrongPIN(t *testing.T) {
	tok := softhsm.TestToken(t)
	_, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: "wrong-pin-0000"})
	if err == nil {
		t.Fatal("Open with a wrong PIN succeeded")
	}
	if strings.Contains(err.Error(), "wrong-pin-0000") {
		t.Fatalf("error reveals the PIN: %v", err)
	}
}

func TestRSADecryptEveryPadding(t *testing.T) {
	m := openKeyedModule(t, SetPIN)
	ctx := context.Background()
	pub, err := m.PublicKey(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pub.N.BitLen() != 4096 || pub.E != 65537 {
		t.Fatalf("set_pin key is %d bits, e=%d", pub.N.BitLen(), pub.E)
	}
	msg := []byte("1234\n")
	encrypt := map[RSAPadding]func() ([]byte, error){
		PKCS1v15:           func() ([]byte, error) { return rsa.EncryptPKCS1v15(rand.Reader, pub, msg) },
		OAEPSHA1:           func() ([]byte, error) { return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil) },
		OAEPSHA256:         func() ([]byte, error) { return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil) },
		OAEPSHA256MGF1SHA1: func() ([]byte, error) { return encryptOAEPMGF1SHA1(pub, msg) },
	}
	for pad, enc := range encrypt {
		t.Run(pad.String(), func(t *testing.T) {
			ct, err := enc()
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.DecryptRSA(ctx, 1, pad, ct)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("decrypted %q, want %q", got, msg)
			}
			for name, bad := range map[string][]byte{
				"flipped": flip(ct, len(ct)/2),
				"short":   ct[1:],
				"long":    append(bytes.Clone(ct), 0),
			} {
				if got, err := m.DecryptRSA(ctx, 1, pad, bad); !refused(pad, got, err, msg) {
					t.Errorf("%s ciphertext: %q, err = %v, want ErrCrypto", name, got, err)
				}
			}
		})
	}
	if _, err := m.DecryptRSA(ctx, 1, RSAPadding(99), make([]byte, 512)); err != ErrCrypto {
		t.Fatalf("unlisted padding: err = %v, want ErrCrypto", err)
	}
	if m.Reconnects() != 0 {
		t.Fatalf("bad ciphertexts caused %d reconnects", m.Reconnects())
	}
}

// encryptOAEPMGF1SHA1 encrypts with OAEP, SHA-256 as the label hash and
// SHA-1 for MGF1, as Android Keystore does.
func encryptOAEPMGF1SHA1(pub *rsa.PublicKey, msg []byte) ([]byte, error) {
	return rsa.EncryptOAEPWithOptions(rand.Reader, pub, msg, &rsa.OAEPOptions{Hash: 5 /* crypto.SHA256 */, MGFHash: 3 /* crypto.SHA1 */})
}

func TestConcurrentSealOpen(t *testing.T) {
	m := openKeyedModule(t, CardKEK)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			aad := []byte(fmt.Sprintf("card-%d", g))
			for i := range 100 {
				pt := []byte(fmt.Sprintf("record %d/%d", g, i))
				sealed, _, err := m.Seal(ctx, aad, pt)
				if err != nil {
					errs <- err
					return
				}
				got, err := m.Open(ctx, aad, sealed)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("goroutine %d op %d: wrong plaintext", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRecoversFromTokenRestart finalises and re-initialises the library
// underneath the adapter, as a restarted HSM looks to a client: every
// session and the login are gone. The next calls must work without a new
// Module.
func TestRecoversFromTokenRestart(t *testing.T) {
	m := openKeyedModule(t, CardKEK, PANHMAC)
	ctx := context.Background()
	sealed, _, err := m.Seal(ctx, []byte("card-1"), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for restart := 1; restart <= 2; restart++ {
		if err := m.raw.Finalize(); err != nil {
			t.Fatal(err)
		}
		if err := m.raw.Initialize(); err != nil {
			t.Fatal(err)
		}
		got, err := m.Open(ctx, []byte("card-1"), sealed)
		if err != nil {
			t.Fatalf("restart %d: Open = %v", restart, err)
		}
		if string(got) != "secret" {
			t.Fatalf("restart %d: wrong plaintext", restart)
		}
		if _, _, err := m.MAC(ctx, PANHMAC, []byte("x")); err != nil {
			t.Fatalf("restart %d: MAC = %v", restart, err)
		}
		if m.Reconnects() != int64(restart) {
			t.Fatalf("restart %d: %d reconnects", restart, m.Reconnects())
		}
	}
}

func TestRecoversFromLogout(t *testing.T) {
	m := openKeyedModule(t, CardKEK)
	ctx := context.Background()
	c, _ := m.current()
	err := c.withSession(func(sh pkcs11.SessionHandle) error { return m.raw.Logout(sh) })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Seal(ctx, []byte("a"), []byte("b")); err != nil {
		t.Fatalf("Seal after logout = %v", err)
	}
	if err := m.Probe(ctx); err != nil {
		t.Fatalf("Probe after recovery = %v", err)
	}
	if m.Reconnects() != 1 {
		t.Fatalf("%d reconnects, want 1", m.Reconnects())
	}
}

func TestMissingKeyIsNeverGenerated(t *testing.T) {
	m, _ := openTestModule(t)
	ctx := context.Background()
	if _, _, err := m.Seal(ctx, nil, []byte("x")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Seal without a KEK = %v, want ErrKeyNotFound", err)
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("a failed Seal left %d keys", len(keys))
	}
}

func TestGenerateRefusesExistingLabel(t *testing.T) {
	m := openKeyedModule(t, CardKEK)
	if err := m.Generate(context.Background(), CardKEK, 1); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Generate = %v, want ErrKeyExists", err)
	}
}
