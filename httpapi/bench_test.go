package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/softhsm"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// benchStack is the whole service in-process on a fresh token and a store
// (SQLite unless told), served over loopback HTTP.
type benchStack struct {
	m       *hsm.Module
	url     string
	token   string
	handler http.Handler
}

func newBenchStack(b *testing.B) *benchStack {
	b.Helper()
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "vault.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return newBenchStackOn(b, store)
}

func newBenchStackOn(b testing.TB, store vault.Store) *benchStack {
	b.Helper()
	tok := softhsm.TestToken(b)
	m, err := hsm.Open(hsm.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	ctx := context.Background()
	for _, p := range []hsm.Purpose{hsm.CardKEK, hsm.PANHMAC, hsm.PEK, hsm.SetPIN} {
		if err := m.Generate(ctx, p, 1); err != nil {
			b.Fatal(err)
		}
	}
	zoneKey := make([]byte, 32)
	rand.Read(zoneKey)
	if err := m.ImportSecret(ctx, hsm.ZonePIN, 1, zoneKey); err != nil {
		b.Fatal(err)
	}
	// A one-second window keeps the budget tables small while the
	// benchmark reveals one card many times over.
	budget := vault.Budget{Window: time.Second, PerCard: 1 << 30, PerDevice: 1 << 30, PerCaller: 1 << 30}
	svc, err := vault.NewService(m, store, vault.Config{BIN: "400000", ExpiryYears: 3, Reveals: budget, PINAttempts: budget})
	if err != nil {
		b.Fatal(err)
	}
	token, line, _ := NewToken("bench", []string{ScopeCardsWrite, ScopeCardsReveal, ScopeDevicesWrite, ScopePINWrite, ScopePINView, ScopeCardsVerify})
	tokensFile := filepath.Join(b.TempDir(), "tokens")
	os.WriteFile(tokensFile, []byte(line+"\n"), 0o600)
	tokens, err := LoadTokens(tokensFile, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := New(Config{Service: svc, Tokens: tokens})
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return &benchStack{m: m, url: srv.URL, token: token, handler: h}
}

// fakeClientKey makes a distinct 4096-bit public key cheaply: an odd
// random modulus with the top bit set. The vault only encrypts to client
// keys, so it cannot tell; real keys take about a second each to generate,
// which would swamp what is measured. Nobody can decrypt these answers.
func fakeClientKey() string {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 4095))
	n.SetBit(n, 4095, 1).SetBit(n, 0, 1)
	der, _ := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n, E: 65537})
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func (s *benchStack) post(path, publicKey string) (int, []byte, error) {
	body, _ := json.Marshal(map[string]string{"public_key": publicKey})
	return s.send(http.MethodPost, path, body)
}

func (s *benchStack) send(method, path string, body []byte) (int, []byte, error) {
	req, _ := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), nil
}

// issueCard issues a virtual card to owner over the API.
func (s *benchStack) issueCard(b *testing.B, owner string) string {
	status, body, err := s.post("/api/v1/jiko-accounts/"+owner+"/virtual-cards", fakeClientKey())
	if err != nil || status != http.StatusCreated {
		b.Fatalf("create: %d %s %v", status, body, err)
	}
	var created struct {
		CardID string `json:"card_id"`
	}
	json.Unmarshal(body, &created)
	return created.CardID
}

// benchPosts posts a fresh client key to path b.N times from parallel
// clients; every answer must have status want.
func (s *benchStack) benchPosts(b *testing.B, path string, want int) {
	keys := fakeClientKeys(b.N)
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if status, body, err := s.post(path, keys[next.Add(1)-1]); err != nil || status != want {
				b.Fatal(fmt.Sprintf("POST %s: %d %s %v", path, status, body, err))
			}
		}
	})
}
