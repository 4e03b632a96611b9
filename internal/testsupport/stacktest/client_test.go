package stacktest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// client is an API caller of the stack.
type client struct {
	token string
	http  *http.Client
}

func newClient(token string) *client {
	return &client{token: token, http: &http.Client{Timeout: 20 * time.Second}}
}

// call sends one request and returns the status and body; err is a
// transport failure (no answer).
func (c *client) call(method, url string, body any, header map[string]string) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// testPAN is a Luhn-valid 16-digit PAN under the sandbox BIN 400000.
func testPAN() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000_000))
	body := fmt.Sprintf("400000%09d", n)
	sum := 0
	for i := range body {
		d := int(body[len(body)-1-i] - '0')
		if i%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + fmt.Sprint((10-sum%10)%10)
}

// readKey is a single-use RSA-4096 key for a Jiko read.
type readKey struct {
	priv *rsa.PrivateKey
	pem  string
}

func newReadKeys(t *testing.T, n int) chan readKey {
	t.Helper()
	keys := make(chan readKey, n)
	for range n {
		go func() {
			priv, err := rsa.GenerateKey(rand.Reader, 4096)
			if err != nil {
				panic(err)
			}
			der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
			keys <- readKey{priv, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
		}()
	}
	return keys
}

// readPAN reveals a card through Jiko's read with a single-use key and
// decrypts the PAN. A retry with the same idempotency key gets the first
// answer again, even though the key is burnt.
func (c *client) readPAN(base, owner, cardID, idem string, k readKey) (int, string, error) {
	status, body, err := c.call("POST", base+"/api/v1/jiko-accounts/"+owner+"/virtual-cards/"+cardID, map[string]string{"public_key": k.pem},
		map[string]string{"x-jiko-idempotency": idem})
	if err != nil || status != http.StatusOK {
		return status, strings.TrimSpace(string(body)), err
	}
	var out struct {
		EncryptedPAN []byte `json:"encrypted_pan"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return status, "", err
	}
	pan, err := rsa.DecryptPKCS1v15(nil, k.priv, out.EncryptedPAN)
	return status, string(pan), err
}
