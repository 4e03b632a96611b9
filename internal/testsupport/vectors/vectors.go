// Package vectors loads Wycheproof's RSAES decryption vectors for the
// tests of every layer that decrypts: the HSM adapter, the PIN unpadding
// and the set-PIN endpoint.
package vectors

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// RSAES is the part of Wycheproof's RSAES decryption schemas the tests read.
type RSAES struct {
	Schema     string  `json:"schema"`
	TestGroups []Group `json:"testGroups"`
}

// Group is a set of vectors under one key.
type Group struct {
	KeySize         int    `json:"keySize"`
	SHA             string `json:"sha"`
	MGFSHA          string `json:"mgfSha"`
	PrivateKeyPKCS8 string `json:"privateKeyPkcs8"`
	Tests           []struct {
		TcID   int    `json:"tcId"`
		Msg    string `json:"msg"`
		CT     string `json:"ct"`
		Label  string `json:"label"`
		Result string `json:"result"`
	} `json:"tests"`
}

// Load reads one vector file, e.g. "rsa_pkcs1_4096_test.json".
func Load(t testing.TB, name string) RSAES {
	t.Helper()
	raw, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatal(err)
	}
	var f RSAES
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// PrivateKey is the group's key, and its PKCS#8 DER.
func (g Group) PrivateKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	der, err := hex.DecodeString(g.PrivateKeyPKCS8)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey), der
}
