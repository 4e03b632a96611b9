// Package softhsm makes fresh, initialised SoftHSM2 tokens for tests and
// development. Every token lives in its own directory with its own
// softhsm2.conf, rendered from the same template the scripts use.
package softhsm

import (
	"bytes"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultModule is where Debian's softhsm2 package installs the PKCS#11 module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

//go:embed softhsm2.conf.tmpl
var confTemplate string

// Token describes an initialised SoftHSM2 token.
type Token struct {
	Module string // path of the PKCS#11 module
	Label  string // token label
	PIN    string // user PIN; callers keep it out of logs and argv
	SOPIN  string // security officer PIN
	Conf   string // path of the softhsm2.conf to export as SOFTHSM2_CONF
	Dir    string // the directory holding the config and the token store
}

// Available reports whether the SoftHSM2 module and softhsm2-util are installed.
func Available() error {
	if _, err := os.Stat(DefaultModule); err != nil {
		return fmt.Errorf("softhsm2 module %s: %w", DefaultModule, err)
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		return fmt.Errorf("softhsm2-util: %w", err)
	}
	return nil
}

// RenderConf returns the softhsm2.conf text for a token directory.
func RenderConf(tokenDir string) string {
	return strings.ReplaceAll(confTemplate, "@TOKENDIR@", tokenDir)
}

// NewToken creates dir/tokens, writes dir/softhsm2.conf and initialises a
// token with the given label and fresh random PINs. The PINs reach
// softhsm2-util through its standard input only where it supports it; it
// takes them as arguments, so this helper is for tests and development,
// never for production tokens.
func NewToken(dir, label string) (*Token, error) {
	if label == "" {
		return nil, errors.New("softhsm: empty token label")
	}
	if err := Available(); err != nil {
		return nil, err
	}
	tokenDir := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte(RenderConf(tokenDir)), 0o600); err != nil {
		return nil, fmt.Errorf("softhsm: %w", err)
	}
	t := &Token{
		Module: DefaultModule,
		Label:  label,
		PIN:    randomPIN(),
		SOPIN:  randomPIN(),
		Conf:   conf,
		Dir:    dir,
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free",
		"--label", label, "--so-pin", t.SOPIN, "--pin", t.PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// The output names the slot and label, never the PINs.
		return nil, fmt.Errorf("softhsm: init token %q: %w: %s", label, err, strings.TrimSpace(out.String()))
	}
	return t, nil
}

func randomPIN() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
