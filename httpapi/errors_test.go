package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/vault"
	"github.com/labstack/echo/v4"
)

// Finding 9: every internal error was logged as "internal error" alone,
// so its cause was lost; the client must still see nothing of it.
func TestInternalErrorLogsItsCause(t *testing.T) {
	var logs bytes.Buffer
	s := New(Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	s.echo.GET("/boom", func(echo.Context) error {
		return vault.Internal(errors.New("rsa: modulus is even"))
	})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "modulus") {
		t.Fatalf("client got %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), `"cause":"rsa: modulus is even"`) || !strings.Contains(logs.String(), `"request_id":"`) {
		t.Fatalf("the log does not carry the cause and request id:\n%s", logs.String())
	}
}

func TestDecodePINCiphertext(t *testing.T) {
	ct := []byte{0x00, 0x02, 0xff, 0x10, 0x20}
	text := base64.StdEncoding.EncodeToString(ct)
	wrapped := text[:4] + "\n" + text[4:] + "\n"
	for _, in := range []string{text, wrapped, " " + text + " "} {
		if got := decodePINCiphertext(in); !bytes.Equal(got, ct) {
			t.Errorf("%q decoded to %x, want %x", in, got, ct)
		}
	}
	for _, in := range []string{"not base64!", text[:len(text)-1], ""} {
		if got := decodePINCiphertext(in); len(got) != 0 {
			t.Errorf("%q decoded to %x, want nothing", in, got)
		}
	}
}
