package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// Environment variables of docs/design.md's operator interface.
// defaultModule is where Debian's softhsm2 package installs its PKCS#11
// module: the development default. (The softhsm package, which says the
// same, is test support, and the product links no test code.)
const defaultModule = "/usr/lib/softhsm/libsofthsm2.so"

const (
	envListen = "CARDVAULT_LISTEN"
	// envMetricsListen, when set, serves /metrics on its own address and
	// not on the API listener.
	envMetricsListen = "CARDVAULT_METRICS_LISTEN"
	envDB            = "CARDVAULT_DB"
	envModule        = "CARDVAULT_PKCS11_MODULE"
	envTokenLabel    = "CARDVAULT_TOKEN_LABEL"
	envTokenSerial   = "CARDVAULT_TOKEN_SERIAL"
	envTokenSlot     = "CARDVAULT_TOKEN_SLOT"
	// envPKCS11URI selects module, token and PIN file in one RFC 7512
	// URI, instead of the module, token and PIN file variables.
	envPKCS11URI   = "CARDVAULT_PKCS11_URI"
	envPINFile     = "CARDVAULT_PKCS11_PIN_FILE"
	envPIN         = "CARDVAULT_PKCS11_PIN"
	envTokensFile  = "CARDVAULT_API_TOKENS_FILE"
	envTranscripts = "CARDVAULT_TRANSCRIPT_DIR"
	envBIN         = "CARDVAULT_BIN"
	envExpiryYears = "CARDVAULT_EXPIRY_YEARS"
	envWindow      = "CARDVAULT_REVEAL_WINDOW"
	envPerCard     = "CARDVAULT_REVEALS_PER_CARD"
	envPerDevice   = "CARDVAULT_REVEALS_PER_DEVICE"
	envPINWindow   = "CARDVAULT_PIN_ATTEMPT_WINDOW"
	envPINPerCard  = "CARDVAULT_PIN_ATTEMPTS_PER_CARD"
	envKeyRefresh  = "CARDVAULT_KEY_REFRESH"
	// Per-caller bounds, in distinct cards (PANs for look-ups) per window.
	envRevealsPerCaller  = "CARDVAULT_REVEAL_CARDS_PER_CALLER"
	envPINCardsPerCaller = "CARDVAULT_PIN_CARDS_PER_CALLER"
	envLookupsPerCaller  = "CARDVAULT_LOOKUPS_PER_CALLER"
	envLookupWindow      = "CARDVAULT_LOOKUP_WINDOW"
	envImportsPerCaller  = "CARDVAULT_IMPORTS_PER_CALLER"
	envImportWindow      = "CARDVAULT_IMPORT_WINDOW"
	envIdemWindow        = "CARDVAULT_IDEMPOTENCY_WINDOW" // how long first answers are kept for replay
	// envDeviceGate is "on" (the default) or "off": whether the cards of
	// an owner with a bound device refuse the routes without a device.
	envDeviceGate = "CARDVAULT_DEVICE_GATE"
	envHSMTimeout = "CARDVAULT_HSM_CALL_TIMEOUT" // an HSM operation's bound, session wait included
	// envHSMSessions caps the sessions the adapter keeps for operations;
	// the token's own limit lowers it.
	envHSMSessions = "CARDVAULT_HSM_SESSIONS"
	// envHSMProfile forces settings of the token's profile, as
	// `cardvault hsm probe` prints them (e.g. "gcm-iv=refused,raw-rsa=no").
	envHSMProfile = "CARDVAULT_HSM_PROFILE"
	envAuditEvery = "CARDVAULT_AUDIT_CHECKPOINT_EVERY" // audit entries per chain between checkpoints
	// envAuditInterval bounds, in time, how much of a chain's tail no
	// checkpoint covers (default 5s): what a kill -9 leaves unsealed.
	envAuditInterval = "CARDVAULT_AUDIT_CHECKPOINT_INTERVAL"
	// The security officer's PIN, which only the backup export needs.
	envSOPINFile = "CARDVAULT_PKCS11_SO_PIN_FILE"
	envSOPIN     = "CARDVAULT_PKCS11_SO_PIN"
	// The database password, when it is not in CARDVAULT_DB: a file, as
	// a container secret provides it.
	envDBPasswordFile = "CARDVAULT_DB_PASSWORD_FILE"
)

// defaultDB is the embedded default database.
const defaultDB = "sqlite:.dev/cardvault.db"

// vaultConfig reads the issuing settings and the reveal budgets.
func vaultConfig() (vault.Config, error) {
	cfg := vault.Config{BIN: getenv(envBIN, "400000"), Reveals: vault.DefaultRevealBudget, PINAttempts: vault.DefaultPINBudget, Lookups: vault.DefaultLookupBudget, Imports: vault.DefaultImportBudget}
	var err error
	if cfg.ExpiryYears, err = intEnv(envExpiryYears, 3); err != nil {
		return cfg, err
	}
	for _, n := range []struct {
		env  string
		into *int
	}{
		{envPerCard, &cfg.Reveals.PerCard}, {envPerDevice, &cfg.Reveals.PerDevice}, {envRevealsPerCaller, &cfg.Reveals.PerCaller},
		{envPINPerCard, &cfg.PINAttempts.PerCard}, {envPINCardsPerCaller, &cfg.PINAttempts.PerCaller},
		{envLookupsPerCaller, &cfg.Lookups.PerCaller}, {envImportsPerCaller, &cfg.Imports.PerCaller},
	} {
		if *n.into, err = intEnv(n.env, *n.into); err != nil {
			return cfg, err
		}
	}
	for _, d := range []struct {
		env  string
		into *time.Duration
	}{{envWindow, &cfg.Reveals.Window}, {envPINWindow, &cfg.PINAttempts.Window}, {envLookupWindow, &cfg.Lookups.Window}, {envImportWindow, &cfg.Imports.Window}, {envIdemWindow, &cfg.IdempotencyWindow}} {
		if *d.into, err = durationEnv(d.env, *d.into); err != nil {
			return cfg, err
		}
	}
	switch gate := getenv(envDeviceGate, "on"); gate {
	case "on", "off":
		cfg.DeviceGate = gate == "on"
	default:
		return cfg, fmt.Errorf("%s: want on or off, got %q", envDeviceGate, gate)
	}
	return cfg, nil
}

func durationEnv(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: want a duration such as 1h: %w", name, err)
	}
	return d, nil
}

func intEnv(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: want a whole number: %w", name, err)
	}
	return n, nil
}

// openStore opens the database a CARDVAULT_DB value names.
func openStore(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return sqlstore.OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		password, err := readSecretFile(envDBPasswordFile)
		if err != nil {
			return nil, err
		}
		return sqlstore.OpenPostgres(ctx, dsn, password)
	}
	return nil, fmt.Errorf("%s: want sqlite:PATH or a postgres:// URL", envDB)
}

func getenv(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// hsmConfig reads the token settings. The PIN comes from a file or the
// environment only: a flag would show it in ps.
func hsmConfig(log *slog.Logger, catalog hsm.KeyRecords) (hsm.Config, error) {
	cfg := hsm.Config{
		Module:      getenv(envModule, defaultModule),
		TokenLabel:  os.Getenv(envTokenLabel),
		TokenSerial: os.Getenv(envTokenSerial),
		Logger:      log,
		Catalog:     catalog,
		Profile:     os.Getenv(envHSMProfile),
	}
	var err error
	if v := os.Getenv(envTokenSlot); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return cfg, fmt.Errorf("%s: %q is not a slot number", envTokenSlot, v)
		}
		slot := uint(n)
		cfg.Slot = &slot
	}
	pinFile := envPINFile
	if raw := os.Getenv(envPKCS11URI); raw != "" {
		for _, env := range []string{envModule, envTokenLabel, envTokenSerial, envTokenSlot} {
			if os.Getenv(env) != "" {
				return cfg, fmt.Errorf("%s and %s are both set; the URI selects the module and the token", envPKCS11URI, env)
			}
		}
		u, err := hsm.ParseURI(raw)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", envPKCS11URI, err)
		}
		cfg.TokenLabel, cfg.TokenSerial, cfg.Slot = u.TokenLabel, u.TokenSerial, u.Slot
		if u.Module != "" {
			cfg.Module = u.Module
		}
		if u.PINFile != "" {
			if os.Getenv(envPINFile) != "" || os.Getenv(envPIN) != "" {
				return cfg, fmt.Errorf("%s names a pin-source and %s or %s is set too; keep one", envPKCS11URI, envPINFile, envPIN)
			}
			if cfg.PIN, err = readFile(u.PINFile); err != nil {
				return cfg, fmt.Errorf("%s pin-source: %w", envPKCS11URI, err)
			}
			pinFile = ""
		}
	}
	if cfg.TokenLabel == "" && cfg.TokenSerial == "" && cfg.Slot == nil {
		cfg.TokenLabel = "cardvault"
	}
	if cfg.KeyRefresh, err = durationEnv(envKeyRefresh, 5*time.Second); err != nil {
		return cfg, err
	}
	if cfg.CallTimeout, err = durationEnv(envHSMTimeout, 10*time.Second); err != nil {
		return cfg, err
	}
	if cfg.MaxSessions, err = intEnv(envHSMSessions, 32); err != nil {
		return cfg, err
	}
	if pinFile != "" {
		if cfg.PIN, err = readPIN(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// readSecretFile reads the secret in the file an environment variable
// names, without its trailing newline; "" when the variable is unset.
func readSecretFile(env string) (string, error) {
	path := os.Getenv(env)
	if path == "" {
		return "", nil
	}
	secret, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", env, err)
	}
	return secret, nil
}

// readFile reads a secret from a file, without its trailing newline.
func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

func readPIN() (string, error) {
	return readPINFrom(envPINFile, envPIN, "no HSM PIN")
}

// readPINFrom reads a PIN from the file fileEnv names (preferred) or from
// env; missing says what is missing.
func readPINFrom(fileEnv, env, missing string) (string, error) {
	pin, err := readSecretFile(fileEnv)
	switch {
	case err != nil:
		return "", err
	case pin != "":
		return pin, nil
	case os.Getenv(fileEnv) != "":
		return "", fmt.Errorf("%s: %s is empty", fileEnv, os.Getenv(fileEnv))
	case os.Getenv(env) != "":
		return os.Getenv(env), nil
	}
	return "", fmt.Errorf("%s: set %s (preferred) or %s", missing, fileEnv, env)
}

// openVault opens the token for the request path (a Serving handle, with
// no ceremony operation) and the database, and has the store checkpoint
// its audit chains with the token's audit key. The caller closes the
// store before the token: closing checkpoints the chains.
func openVault(ctx context.Context, log *slog.Logger) (*hsm.Serving, *sqlstore.Store, error) {
	m, store, err := openPinned(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	return hsm.ServingOf(m), store, nil
}

// openPinned is openVault for the ceremony-side commands that need the
// whole module with the key catalog pinned (a rewrap's dry run).
func openPinned(ctx context.Context, log *slog.Logger) (*hsm.Module, *sqlstore.Store, error) {
	every, err := intEnv(envAuditEvery, 100)
	if err != nil {
		return nil, nil, err
	}
	interval, err := durationEnv(envAuditInterval, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(ctx, getenv(envDB, defaultDB))
	if err != nil {
		return nil, nil, err
	}
	// The server uses only the keys the ceremonies recorded in the store.
	m, _, err := openHSM(log, store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	store.UseAuditKey(m, every)
	store.CheckpointEvery(interval)
	store.PruneInBackground()
	return m, store, nil
}

// openHSM opens the configured token, with the key catalog pinned to
// catalog's records, or unpinned when catalog is nil (the ceremonies that
// make keys, and the bench).
func openHSM(log *slog.Logger, catalog hsm.KeyRecords) (*hsm.Module, string, error) {
	cfg, err := hsmConfig(log, catalog)
	if err != nil {
		return nil, "", err
	}
	m, err := hsm.Open(cfg)
	// crypto11 says only "could not find PKCS#11 token" (its error value
	// is unexported): say where the vault looked and what chooses it.
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		err = fmt.Errorf("%w: the module %s shows no such token; check %s, %s, %s or %s, and for SoftHSM2 %s (beside scripts/dev.sh, `. .dev/env` sets them)",
			err, cfg.Module, envTokenLabel, envTokenSerial, envTokenSlot, envPKCS11URI, "SOFTHSM2_CONF")
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)):
		err = fmt.Errorf("%w: the token refused the PIN from %s", err, pinSource())
	}
	return m, cfg.TokenLabel, err
}

// pinSource names where hsmConfig took the user PIN from, for a message
// that must not show the PIN itself.
func pinSource() string {
	if strings.Contains(os.Getenv(envPKCS11URI), "pin-source") {
		return "the pin-source of " + envPKCS11URI
	}
	if f := os.Getenv(envPINFile); f != "" {
		return fmt.Sprintf("%s (%s)", envPINFile, f)
	}
	return envPIN
}
