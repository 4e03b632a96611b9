package vault

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/luhn"
)

func TestGeneratePAN(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		pan, err := generatePAN(rand.Reader, "400000")
		if err != nil {
			t.Fatal(err)
		}
		if len(pan) != 16 || !bytes.HasPrefix(pan, []byte("400000")) || !allDigits(pan) || !luhn.Valid(pan) {
			t.Fatalf("generated %q", pan)
		}
		seen[string(pan)] = true
	}
	if len(seen) < 990 {
		t.Fatalf("only %d distinct PANs in 1000", len(seen))
	}
}

func TestValidatePAN(t *testing.T) {
	for pan, want := range map[string]string{
		"4111111111111111":     "",
		"411111111111":         "pan: must be 13 to 19 digits",
		"41111111111111111113": "pan: must be 13 to 19 digits",
		"4111-1111-1111-1111":  "pan: must be digits only",
		"":                     "pan: must be digits only",
		"4111111111111112":     "pan: fails the Luhn check",
	} {
		err := validatePAN([]byte(pan))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("validatePAN(%q) = %q, want %q", pan, got, want)
		}
	}
}

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)
	if m, y := expiryAfter(now, 3); m != 1 || y != 2029 {
		t.Fatalf("expiryAfter = %d/%d", m, y)
	}
	if !lastDayOfMonth(2, 2028).Equal(time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Fatal("leap February")
	}
	if expired(1, 2026, now) || !expired(12, 2025, now) || !expired(1, 2026, now.AddDate(0, 0, 1)) {
		t.Fatal("expired() is wrong at the month boundary")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	rec := &secretRecord{PAN: []byte("4111111111111111"), CVV: []byte("123"), ExpiryMonth: 7, ExpiryYear: 2029, Name: []byte("JANE DOE")}
	b, err := rec.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.PAN) != "4111111111111111" || string(got.CVV) != "123" || got.ExpiryMonth != 7 || got.ExpiryYear != 2029 || string(got.Name) != "JANE DOE" {
		t.Fatalf("decoded %+v", got)
	}
	got.clear()
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("clearing the decoded record did not clear the buffer it aliases")
	}
	b, _ = rec.encode()
	for _, bad := range [][]byte{nil, {2}, {1, 5, '1'}, append(b, 0)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%x) accepted", bad)
		}
	}
}

func pemOf(t testing.TB, typ string, der []byte, crlf bool) string {
	s := string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	if crlf {
		s = strings.ReplaceAll(s, "\n", "\r\n")
	}
	return s
}

var key4096 = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		panic(err)
	}
	return k
}()

func TestParseClientKeyPEM(t *testing.T) {
	spki, _ := x509.MarshalPKIXPublicKey(&key4096.PublicKey)
	pkcs1 := x509.MarshalPKCS1PublicKey(&key4096.PublicKey)
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	e3 := key4096.PublicKey
	e3.E = 3
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	good := pemOf(t, "PUBLIC KEY", spki, false)
	cases := []struct {
		name, in, want string
	}{
		{"SPKI", good, ""},
		{"SPKI CRLF", pemOf(t, "PUBLIC KEY", spki, true), ""},
		{"PKCS#1", pemOf(t, "RSA PUBLIC KEY", pkcs1, false), ""},
		{"PKCS#1 CRLF", pemOf(t, "RSA PUBLIC KEY", pkcs1, true), ""},
		{"empty", "", "public_key: must be a PEM-encoded RSA public key"},
		{"two blocks", good + good, "public_key: must hold exactly one PEM block"},
		{"private key", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small), false), `public_key: PEM type "RSA PRIVATE KEY" is not allowed; use PUBLIC KEY or RSA PUBLIC KEY`},
		{"garbage SPKI", pemOf(t, "PUBLIC KEY", []byte{1, 2, 3}, false), "public_key: is not a valid SubjectPublicKeyInfo"},
		{"garbage PKCS#1", pemOf(t, "RSA PUBLIC KEY", []byte{1, 2, 3}, false), "public_key: is not a valid PKCS#1 RSA public key"},
		{"EC", pemOf(t, "PUBLIC KEY", ecDER, false), "public_key: must be an RSA key"},
		{"2048", pemOf(t, "PUBLIC KEY", smallDER, false), "public_key: RSA key must be 4096 bits, got 2048"},
		{"e=3", pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&e3), false), "public_key: RSA public exponent must be 65537"},
	}
	var fps [][]byte
	for _, tc := range cases {
		k, err := ParseClientKeyPEM("public_key", tc.in)
		got := ""
		if err != nil {
			got = err.Error()
			if KindOf(err) != KindInvalid {
				t.Errorf("%s: kind %v, want invalid", tc.name, KindOf(err))
			}
		} else {
			fps = append(fps, k.Fingerprint)
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	for _, fp := range fps[1:] {
		if !bytes.Equal(fp, fps[0]) {
			t.Fatal("one key in SPKI and PKCS#1 forms has two fingerprints")
		}
	}
}

func FuzzParseClientKeyPEM(f *testing.F) {
	spki, _ := x509.MarshalPKIXPublicKey(&key4096.PublicKey)
	f.Add(pemOf(f, "PUBLIC KEY", spki, false))
	f.Add(pemOf(f, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&key4096.PublicKey), true))
	f.Add("-----BEGIN PUBLIC KEY-----\n\n-----END PUBLIC KEY-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParseClientKeyPEM("public_key", in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInvalid || e.Field != "public_key" {
				t.Fatalf("error %v is not an invalid public_key", err)
			}
			return
		}
		if k.Public.N.BitLen() != 4096 || k.Public.E != 65537 || len(k.Fingerprint) != 32 {
			t.Fatalf("accepted a key outside the allow-list")
		}
	})
}
