package httpapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewTokenValidates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scopes []string
		want   string
	}{
		{"ok", []string{"cards:read"}, ""},
		{"bad name!", []string{"cards:read"}, `token name "bad name!": want 1 to 64 letters, digits, '.', '_' or '-'`},
		{"ok", nil, "a token needs at least one scope"},
		{"ok", []string{"cards:admin"}, `unknown scope "cards:admin" (want some of cards:write,cards:read,cards:reveal,cards:lookup,pin:write,devices:write,sandbox)`},
	} {
		_, _, err := NewToken(tc.name, tc.scopes)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("NewToken(%q, %v) = %q, want %q", tc.name, tc.scopes, got, tc.want)
		}
	}
}

func TestTokensVerifyAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	a, lineA, _ := NewToken("alpha", []string{ScopeCardsRead})
	b, lineB, _ := NewToken("beta", []string{ScopeCardsWrite, ScopeSandbox})
	if strings.Contains(lineA, a) || !strings.HasPrefix(a, "cvt_") {
		t.Fatalf("the tokens file line holds the token: %s", lineA)
	}
	os.WriteFile(path, []byte("# comment\n\n"+lineA+"\n"), 0o600)
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := tokens.verify(a); !ok || tok.name != "alpha" || len(tok.scopes) != 1 {
		t.Fatalf("verify(alpha) = %+v, %v", tok, ok)
	}
	for _, wrong := range []string{b, "", a + "x", a[:len(a)-1]} {
		if _, ok := tokens.verify(wrong); ok {
			t.Fatalf("verify(%q) accepted", wrong)
		}
	}
	os.WriteFile(path, []byte(lineA+"\n"+lineB+"\n"), 0o600)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	tokens.checked = time.Time{} // as if a second had passed
	if tok, ok := tokens.verify(b); !ok || tok.name != "beta" {
		t.Fatal("a token appended to the file is not accepted after reload")
	}
	os.WriteFile(path, []byte("sha256:zz beta cards:read\n"), 0o600)
	if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), "line 1: bad hash") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := LoadTokens(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("a missing tokens file was accepted")
	}
}
