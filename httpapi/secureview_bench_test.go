package httpapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeDeviceModulus is a distinct odd 2048-bit modulus, for the reason
// fakeClientKey gives: the vault only encrypts to it.
func fakeDeviceModulus() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 2047))
	return n.SetBit(n, 2047, 1).SetBit(n, 0, 1)
}

// bindBenchDevice registers and verifies a device over the API and returns
// its id and key.
func (s *benchStack) bindBenchDevice(b *testing.B, person string) (string, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := key.PublicKey.Bytes()
	body, _ := json.Marshal(map[string]string{"person_id": person, "key_type": "ecdsa-p256", "key": hex.EncodeToString(point), "key_purpose": "unrestricted"})
	status, resp, err := s.send(http.MethodPost, "/v1/mfa/devices", body)
	if err != nil || status != http.StatusAccepted {
		b.Fatalf("register: %d %s %v", status, resp, err)
	}
	var reg struct {
		ID        string
		Challenge struct {
			ID           string
			StringToSign string `json:"string_to_sign"`
		}
	}
	json.Unmarshal(resp, &reg)
	body, _ = json.Marshal(map[string]string{"signature": signHex(key, reg.Challenge.StringToSign)})
	if status, resp, err := s.send(http.MethodPut, "/v1/mfa/challenges/signatures/"+reg.Challenge.ID, body); err != nil || status != http.StatusNoContent {
		b.Fatalf("verify: %d %s %v", status, resp, err)
	}
	return reg.ID, key
}

func signHex(key *ecdsa.PrivateKey, msg string) string {
	digest := sha256.Sum256([]byte(msg))
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	return hex.EncodeToString(sig)
}

// secureViewBody is a signed request with a fresh 2048-bit JWK.
func secureViewBody(deviceID string, key *ecdsa.PrivateKey, i int) []byte {
	jwk := map[string]string{
		"kty": "RSA", "use": "enc", "alg": "RS256", "kid": fmt.Sprint("bench-", i),
		"n": base64.RawURLEncoding.EncodeToString(fakeDeviceModulus().Bytes()), "e": "AQAB",
	}
	names := make([]string, 0, len(jwk))
	for k := range jwk {
		names = append(names, k)
	}
	sort.Strings(names)
	pairs := make([]string, len(names))
	for j, k := range names {
		pairs[j] = k + ":" + jwk[k]
	}
	body, _ := json.Marshal(map[string]any{
		"device_id": deviceID, "signature": signHex(key, strings.Join(pairs, ";")), "jwk": jwk,
		"jwe": map[string]string{"alg": "RSA_OAEP_256", "enc": "A256GCM"},
	})
	return body
}

// BenchmarkSecureView measures the Solaris secure view over loopback HTTP
// with 2048-bit device keys, beside the raw HSM open rate and the RSA-2048
// public operation the JWE's key wrap costs, in one run.
func BenchmarkSecureView(b *testing.B) {
	s := newBenchStack(b)
	cardID := s.issueCard(b, "person-1")
	deviceID, deviceKey := s.bindBenchDevice(b, "person-1")
	path := "/v1/cards/" + cardID + "/virtual_card_requests"

	b.Run("HSMOpen", func(b *testing.B) { benchHSMOpen(b, s.m) })
	b.Run("RSA2048PublicOAEP", func(b *testing.B) {
		pub := &rsa.PublicKey{N: fakeDeviceModulus(), E: 65537}
		cek := make([]byte, 32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("SecureViewHTTP", func(b *testing.B) {
		bodies := make([][]byte, b.N)
		for i := range bodies {
			bodies[i] = secureViewBody(deviceID, deviceKey, i)
		}
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				status, resp, err := s.send(http.MethodPost, path, bodies[next.Add(1)-1])
				if err != nil || status != http.StatusOK {
					b.Fatal(fmt.Sprintf("secure view: %d %s %v", status, resp, err))
				}
			}
		})
	})
}
