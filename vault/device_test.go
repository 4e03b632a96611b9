package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
)

var key2048 = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkJSON(members map[string]any) []byte {
	b, _ := json.Marshal(members)
	return b
}

func goodJWK() map[string]any {
	return map[string]any{"kty": "RSA", "use": "enc", "alg": "RS256", "kid": "k-1", "n": b64url(key2048.N.Bytes()), "e": "AQAB"}
}

func with(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

func without(m map[string]any, k string) map[string]any {
	delete(m, k)
	return m
}

func TestParseDeviceJWK(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	even := new(big.Int).Add(key2048.N, big.NewInt(1))
	huge := new(big.Int).Lsh(big.NewInt(1), 4096) // 4097 bits
	huge.Add(huge, big.NewInt(1))
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"complete", jwkJSON(goodJWK()), ""},
		{"minimal", jwkJSON(without(without(without(goodJWK(), "use"), "alg"), "kid")), ""},
		{"empty kid", jwkJSON(with(goodJWK(), "kid", "")), ""},
		{"padded standard base64, as the provider's example", jwkJSON(with(goodJWK(), "n", base64.StdEncoding.EncodeToString(key2048.N.Bytes()))), ""},
		{"e = 3", jwkJSON(with(goodJWK(), "e", "Aw")), "jwk[e]: RSA public exponent must be 65537 (AQAB)"},
		{"e huge", jwkJSON(with(goodJWK(), "e", b64url(make([]byte, 16)))), "jwk[e]: RSA public exponent must be 65537 (AQAB)"},
		{"1024 bits", jwkJSON(with(goodJWK(), "n", b64url(small.N.Bytes()))), "jwk[n]: RSA modulus must be 2048 to 4096 bits, got 1024"},
		{"4097 bits", jwkJSON(with(goodJWK(), "n", b64url(huge.Bytes()))), "jwk[n]: RSA modulus must be 2048 to 4096 bits, got 4097"},
		{"even modulus", jwkJSON(with(goodJWK(), "n", b64url(even.Bytes()))), "jwk[n]: RSA modulus must be odd"},
		{"n not base64", jwkJSON(with(goodJWK(), "n", "!!")), "jwk[n]: must be base64url"},
		{"private d", jwkJSON(with(goodJWK(), "d", "AQAB")), "jwk[d]: is a private key member; send the public key only"},
		{"private p", jwkJSON(with(goodJWK(), "p", "AQAB")), "jwk[p]: is a private key member; send the public key only"},
		{"kty EC", jwkJSON(with(goodJWK(), "kty", "EC")), `jwk[kty]: must be "RSA"`},
		{"use sig", jwkJSON(with(goodJWK(), "use", "sig")), `jwk[use]: must be "enc"`},
		{"alg RSA-OAEP", jwkJSON(with(goodJWK(), "alg", "RSA-OAEP")), `jwk[alg]: must be "RS256"`},
		{"x5c", jwkJSON(with(goodJWK(), "x5c", "MII")), "jwk[x5c]: is not allowed; use kty, n, e, use, alg and kid"},
		{"no n", jwkJSON(without(goodJWK(), "n")), "jwk[n]: is required"},
		{"no kty", jwkJSON(without(goodJWK(), "kty")), "jwk[kty]: is required"},
		{"e a number", jwkJSON(with(goodJWK(), "e", 65537)), "jwk[e]: must be a string"},
		{"kid with ;", jwkJSON(with(goodJWK(), "kid", "a;kty:RSA")), "jwk[kid]: must be at most 128 printable characters without ';'"},
		{"duplicate n", []byte(`{"kty":"RSA","n":"` + b64url(key2048.N.Bytes()) + `","e":"AQAB","n":"AQAB"}`), "jwk[n]: appears more than once"},
		{"array", []byte(`[1]`), "jwk: must be a JSON object"},
		{"string", []byte(`"x"`), "jwk: must be a JSON object"},
		{"trailing", []byte(`{"kty":"RSA"} {}`), "jwk: must be a single JSON object"},
		{"too large", []byte(`{"kid":"` + strings.Repeat("x", 5000) + `"}`), "jwk: is too large"},
	}
	for _, c := range cases {
		k, err := ParseDeviceJWK(c.in)
		got := ""
		if err != nil {
			got = err.Error()
			if KindOf(err) != KindInvalid {
				t.Errorf("%s: kind %v", c.name, KindOf(err))
			}
		} else if k.Public.N.Cmp(key2048.N) != 0 || k.Public.E != 65537 {
			t.Errorf("%s: parsed another key", c.name)
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestSignedStringIsSortedMembersAsReceived(t *testing.T) {
	n := b64url(key2048.N.Bytes())
	// Member order in the JSON does not matter; values are used verbatim.
	in := []byte(`{"use":"enc","n":"` + n + `","kty":"RSA","kid":"","e":"AQAB","alg":"RS256"}`)
	k, err := ParseDeviceJWK(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "alg:RS256;e:AQAB;kid:;kty:RSA;n:" + n + ";use:enc"
	if k.SignedString != want {
		t.Fatalf("signed string %q, want %q", k.SignedString, want)
	}
	if !k.HasKeyID || k.KeyID != "" {
		t.Fatalf("kid: %q %v", k.KeyID, k.HasKeyID)
	}
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(&key2048.PublicKey))
	if string(k.Fingerprint) != string(sum[:]) {
		t.Fatal("fingerprint is not the PKCS#1 SHA-256 the Jiko surface burns")
	}
}

func TestDecodeAndVerifySignature(t *testing.T) {
	dev, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := dev.PublicKey.Bytes()
	msg := []byte("alg:RS256;e:AQAB")
	digest := sha256.Sum256(msg)
	der, _ := ecdsa.SignASN1(rand.Reader, dev, digest[:])
	good := hex.EncodeToString(der)
	for _, s := range []string{good, strings.ToUpper(good)} {
		got, err := DecodeSignature("signature", s)
		if err != nil || !verifySignature(point, msg, got) {
			t.Fatalf("good signature %s: %v", s, err)
		}
	}
	if verifySignature(point, []byte("alg:RS256;e:AQAC"), der) {
		t.Fatal("signature verified over another message")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherPoint, _ := other.PublicKey.Bytes()
	if verifySignature(otherPoint, msg, der) {
		t.Fatal("signature verified under another key")
	}
	for name, s := range map[string]string{
		"empty":             "",
		"not hex":           "zz",
		"odd hex":           good[1:],
		"trailing byte":     good + "00",
		"base64 as hex":     "556F4558783743346570744B674D3838454E3444334F627141394E696735726B3946593739356B413353337359767A34756F387977754D2F4658536134327A41394454716D3337616570764335346A477276744579376246514B546C79465A6A7A532F577545722B4946644A4A2F674953784E7A715451765A3077432B39486E6F4B7A36447050725537695657476A626B3057366549746363312F577654742F39594D4B726B7541506E49426B4A74426B737254687867562B3169636155582B432B426F41696A64544A314D773774624F70556F4C686257392F496936773235744472494E33564A6166446E6F634E523438335469595568382B70343946703473395971434872503270395959616B513155795673444635504B45596B75784A2F7A797933334779686732744D5473435238476B7959657648372F31733532472B6C73573048754F597A4C364E324954426B6C666D413D3D0D0A",
		"negative r":        "3006020181020101",
		"zero s":            "3006020101020100",
		"non-minimal r":     "300702020001020101",
		"r of 33 bytes":     "3027022101" + strings.Repeat("00", 32) + "020101",
		"three integers":    "3009020101020101020101",
		"set, not sequence": "3106020101020101",
	} {
		if _, err := DecodeSignature("signature", s); err == nil {
			t.Errorf("%s: accepted", name)
		} else if e := new(Error); !errors.As(err, &e) || e.Field != "signature" || e.Kind != KindInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseDeviceKey(t *testing.T) {
	dev, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := dev.PublicKey.Bytes()
	if _, err := parseDeviceKey("key", hex.EncodeToString(point)); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Point, _ := p384.PublicKey.Bytes()
	for name, s := range map[string]string{
		"compressed": hex.EncodeToString(elliptic.MarshalCompressed(elliptic.P256(), dev.X, dev.Y)),
		"off curve":  "04" + strings.Repeat("01", 64),
		"P-384":      hex.EncodeToString(p384Point),
		"infinity":   "00",
		"not hex":    "04zz",
	} {
		if _, err := parseDeviceKey("key", s); err == nil || !strings.HasPrefix(err.Error(), "key: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSecureViewPayload(t *testing.T) {
	rec := &secretRecord{PAN: []byte("4000001234567899"), CVV: []byte("123"), ExpiryMonth: 2, ExpiryYear: 2028, Name: []byte(`ADA "Q" LOVELACE`)}
	b, err := secureViewPayload(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	if got["pan"] != "4000001234567899" || got["cvc"] != "123" || got["expires_at"] != "2028-02-29" || got["line_1"] != `ADA "Q" LOVELACE` || len(got) != 4 {
		t.Fatalf("payload %v", got)
	}
}

func FuzzParseDeviceJWK(f *testing.F) {
	f.Add(jwkJSON(goodJWK()))
	f.Add([]byte(`{"kty":"RSA","n":"AQAB","n":"AQAB","e":"AQAB"}`))
	f.Add([]byte(`{"kty":"RSA","e":"AQAB","n":"` + base64.StdEncoding.EncodeToString(key2048.N.Bytes()) + `","d":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParseDeviceJWK(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInvalid || !strings.HasPrefix(e.Field, "jwk") {
				t.Fatalf("error %v is not an invalid jwk member", err)
			}
			return
		}
		bits := k.Public.N.BitLen()
		if bits < 2048 || bits > 4096 || k.Public.E != 65537 || len(k.Fingerprint) != 32 {
			t.Fatalf("accepted a key outside the allow-list: %d bits, e=%d", bits, k.Public.E)
		}
		// The signed string holds every member once, sorted, and re-parses
		// to the same pairs.
		pairs := strings.Split(k.SignedString, ";")
		for i := 1; i < len(pairs); i++ {
			if strings.SplitN(pairs[i-1], ":", 2)[0] >= strings.SplitN(pairs[i], ":", 2)[0] {
				t.Fatalf("signed string not strictly sorted: %q", k.SignedString)
			}
		}
	})
}

func FuzzDecodeSignature(f *testing.F) {
	dev, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("m"))
	der, _ := ecdsa.SignASN1(rand.Reader, dev, digest[:])
	f.Add(hex.EncodeToString(der))
	f.Add("3006020101020101")
	f.Add("300702020001020101")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := DecodeSignature("signature", in)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("kind %v", KindOf(err))
			}
			return
		}
		// Anything accepted is canonical DER: hex of it is the input.
		if !strings.EqualFold(hex.EncodeToString(got), in) || len(got) > maxSignatureDER {
			t.Fatalf("accepted %q as %x", in, got)
		}
		// And a verifier never panics on it.
		point, _ := dev.PublicKey.Bytes()
		_ = verifySignature(point, []byte("m"), got)
	})
}
