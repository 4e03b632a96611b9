package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/sqlstore"
)

// A request whose client went away before the vault answered is not the
// vault's failure: it is recorded as 499 (client closed request), not as
// a 500 that would page someone for a client's disconnect, and it is not
// logged as an error.
func TestClientGoneIsNotA5xx(t *testing.T) {
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := newBenchStackOn(t, store)
	srv := s.handler.(*Server)

	body, _ := json.Marshal(map[string]string{"public_key": fakeClientKey()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone before the vault reads the card
	req := httptest.NewRequest(http.MethodPost, "/api/v1/jiko-accounts/acct-1/virtual-cards/0190a6c2-0000-7000-8000-000000000000", bytes.NewReader(body)).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != statusClientClosed {
		t.Fatalf("a request whose client is gone answered %d", rec.Code)
	}
	scrape := httptest.NewRecorder()
	MetricsHandler(srv.metrics.registry).ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	want := `cardvault_http_requests_total{method="POST",route="/api/v1/jiko-accounts/:account_id/virtual-cards/:card_id",status="499"} 1`
	if !strings.Contains(scrape.Body.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, grepLines(scrape.Body.String(), "cardvault_http_requests_total"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
