package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parse parses a command line as run does, into a grammar the test reads.
func parse(t *testing.T, args ...string) (*cli, error) {
	t.Helper()
	grammar := &cli{}
	parser, err := newParser(grammar, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse(args)
	return grammar, err
}

// Issue 30: settings come from the command line, then the environment,
// then a --config file, then the default; an empty variable counts as
// unset, as it did before the CLI moved onto kong.
func TestSettingsPrecedence(t *testing.T) {
	config := filepath.Join(t.TempDir(), "cardvault.conf")
	if err := os.WriteFile(config, []byte("# a comment\nCARDVAULT_LISTEN=127.0.0.1:9001\nCARDVAULT_REVEALS_PER_CARD = 7\nCARDVAULT_BIN=\"411111\"\nCARDVAULT_EXPIRY_YEARS=4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envListen, "127.0.0.1:9002")
	t.Setenv(envPerCard, "")
	t.Setenv(envPerDevice, "")
	t.Setenv("CARDVAULT_EXPIRY_YEARS", "5")
	g, err := parse(t, "serve", "--config", config, "--expiry-years", "6")
	if err != nil {
		t.Fatal(err)
	}
	s := g.Serve
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"the environment over the file", s.Listen, "127.0.0.1:9002"},
		{"the file over an empty variable", s.RevealsPerCard, 7},
		{"the default for an empty variable the file leaves", s.RevealsPerDevice, 30},
		{"the file's quoted value", s.BIN, "411111"},
		{"the command line over the environment and the file", s.ExpiryYears, 6},
		{"the default where nothing gives one", s.PINAttemptsPerCard, 5},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

// A --config file refuses what is no setting (a typo would leave the
// default in force unnoticed) and the secrets, which belong in files or
// the environment; a PIN is never a flag.
func TestConfigFileRefusals(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct{ body, want string }{
		"typo":      {"CARDVAULT_REVEALS_PER_CRAD=3\n", "cardvault.conf:1: CARDVAULT_REVEALS_PER_CRAD is not a cardvault setting"},
		"secret":    {"\nCARDVAULT_PKCS11_PIN=1234\n", "cardvault.conf:2: CARDVAULT_PKCS11_PIN is a secret"},
		"no equals": {"CARDVAULT_LISTEN\n", "cardvault.conf:1: want VARIABLE=value"},
		"set twice": {"CARDVAULT_BIN=411111\nCARDVAULT_BIN=422222\n", "cardvault.conf:2: CARDVAULT_BIN is set twice"},
		// An empty first value is still a setting: a second line must not
		// quietly win over it.
		"set twice, first empty": {"CARDVAULT_BIN=\nCARDVAULT_BIN=422222\n", "cardvault.conf:2: CARDVAULT_BIN is set twice"},
		"bad number":             {"CARDVAULT_REVEALS_PER_CARD=many\n", "reveals-per-card"},
	} {
		path := filepath.Join(dir, name, "cardvault.conf")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := parse(t, "serve", "--config", path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
		if strings.Contains(name, "secret") {
			if _, err := parse(t, "serve", "--config", path); err != nil && strings.Contains(err.Error(), "1234") {
				t.Errorf("the refusal shows the PIN: %v", err)
			}
		}
	}
	for _, flag := range []string{"--pkcs11-pin=1234", "--pkcs11-so-pin=1234"} {
		if _, err := parse(t, "ceremony", "export", "--out", "x", "--components", "2", flag); err == nil {
			t.Errorf("%s was taken as a flag", flag)
		}
	}
}
