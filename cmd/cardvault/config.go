package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/softhsm"
)

// Environment variables of DESIGN.md's operator interface.
const (
	envListen      = "CARDVAULT_LISTEN"
	envDB          = "CARDVAULT_DB"
	envModule      = "CARDVAULT_PKCS11_MODULE"
	envTokenLabel  = "CARDVAULT_TOKEN_LABEL"
	envPINFile     = "CARDVAULT_PKCS11_PIN_FILE"
	envPIN         = "CARDVAULT_PKCS11_PIN"
	envTokensFile  = "CARDVAULT_API_TOKENS_FILE"
	envTranscripts = "CARDVAULT_TRANSCRIPT_DIR"
)

func getenv(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// hsmConfig reads the token settings. The PIN comes from a file or the
// environment only: a flag would show it in ps.
func hsmConfig(log *slog.Logger) (hsm.Config, error) {
	cfg := hsm.Config{
		Module:     getenv(envModule, softhsm.DefaultModule),
		TokenLabel: getenv(envTokenLabel, "cardvault"),
		Logger:     log,
	}
	pin, err := readPIN()
	if err != nil {
		return cfg, err
	}
	cfg.PIN = pin
	return cfg, nil
}

func readPIN() (string, error) {
	if path := os.Getenv(envPINFile); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", envPINFile, err)
		}
		pin := strings.TrimRight(string(b), "\r\n")
		if pin == "" {
			return "", fmt.Errorf("%s: %s is empty", envPINFile, path)
		}
		return pin, nil
	}
	if pin := os.Getenv(envPIN); pin != "" {
		return pin, nil
	}
	return "", errors.New("no HSM PIN: set " + envPINFile + " (preferred) or " + envPIN)
}
