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

// The settings of docs/design.md's operator interface. Each field is a
// flag and a CARDVAULT_* variable at once; a command embeds the groups it
// reads, so its --help lists them with their defaults, and README.md's
// configuration table is made from the same tags
// (TestConfigurationTableIsTheBinarys). The command line wins, then the
// environment, then a --config file, then the default. Secrets are not
// here: they come from files or the environment only (secretVariables).

// tokenSettings choose the PKCS#11 token and how the vault uses it.
type tokenSettings struct {
	Module      string        `name:"pkcs11-module" env:"CARDVAULT_PKCS11_MODULE" default:"/usr/lib/softhsm/libsofthsm2.so" placeholder:"PATH" help:"PKCS#11 library: any vendor's (mount it read-only into the container)"`
	TokenLabel  string        `name:"token-label" env:"CARDVAULT_TOKEN_LABEL" placeholder:"LABEL" help:"token label; \x60cardvault\x60 when nothing else selects the token"`
	TokenSerial string        `name:"token-serial" env:"CARDVAULT_TOKEN_SERIAL" placeholder:"SERIAL" help:"token serial number; every selector given must match, and exactly one token may"`
	TokenSlot   string        `name:"token-slot" env:"CARDVAULT_TOKEN_SLOT" placeholder:"N" help:"slot id; every selector given must match, and exactly one token may"`
	URI         string        `name:"pkcs11-uri" env:"CARDVAULT_PKCS11_URI" placeholder:"URI" help:"an RFC 7512 \x60pkcs11:\x60 URI (\x60token\x60, \x60serial\x60, \x60slot-id\x60, \x60module-path\x60, \x60pin-source=file:\x60) instead of the module, token and PIN settings ([docs/hsm.md](docs/hsm.md))"`
	Profile     string        `name:"hsm-profile" env:"CARDVAULT_HSM_PROFILE" placeholder:"SETTINGS" help:"force settings of the token's profile, as \x60cardvault hsm probe\x60 prints them, e.g. \x60gcm-iv=refused,raw-rsa=no\x60"`
	PINFile     string        `name:"pkcs11-pin-file" env:"CARDVAULT_PKCS11_PIN_FILE" placeholder:"FILE" help:"file holding the user PIN (preferred to CARDVAULT_PKCS11_PIN)"`
	CallTimeout time.Duration `name:"hsm-call-timeout" env:"CARDVAULT_HSM_CALL_TIMEOUT" default:"10s" help:"bound on one HSM operation, the wait for a session included; past it, 503"`
	Sessions    int           `name:"hsm-sessions" env:"CARDVAULT_HSM_SESSIONS" default:"32" help:"sessions kept for operations (at least 2); a token that reports fewer (\x60ulMaxSessionCount\x60, less 2 for the login and key generation) lowers it"`
	KeyRefresh  time.Duration `name:"key-refresh" env:"CARDVAULT_KEY_REFRESH" default:"5s" help:"how long a server trusts its list of key versions; a rotation in another process is in use within this time"`
}

// databaseSettings name the database.
type databaseSettings struct {
	DB           string `name:"db" env:"CARDVAULT_DB" default:"sqlite:.dev/cardvault.db" placeholder:"DSN" help:"\x60sqlite:PATH\x60, or \x60postgres://user@host:5432/db?sslmode=…\x60 (pgx)"`
	PasswordFile string `name:"db-password-file" env:"CARDVAULT_DB_PASSWORD_FILE" placeholder:"FILE" help:"file holding the PostgreSQL password, when it is not in the URL"`
}

// auditSettings say how often the audit chains are sealed.
type auditSettings struct {
	CheckpointEvery    int           `name:"audit-checkpoint-every" env:"CARDVAULT_AUDIT_CHECKPOINT_EVERY" default:"100" help:"audit entries per chain between HMAC checkpoints"`
	CheckpointInterval time.Duration `name:"audit-checkpoint-interval" env:"CARDVAULT_AUDIT_CHECKPOINT_INTERVAL" default:"5s" help:"a chain with entries past its last checkpoint is checkpointed within this time: what a killed process can leave unsealed"`
}

// storeSettings are a database and its audit sealing: what every command
// that opens the vault's records reads.
type storeSettings struct {
	databaseSettings `embed:""`
	auditSettings    `embed:""`
}

// vaultSettings are the issuing settings and the budgets.
type vaultSettings struct {
	BIN                  string        `name:"bin" env:"CARDVAULT_BIN" default:"400000" help:"6–8 digit BIN of sandbox-issued PANs"`
	ExpiryYears          int           `name:"expiry-years" env:"CARDVAULT_EXPIRY_YEARS" default:"3" help:"years until issued cards expire (end of month)"`
	RevealWindow         time.Duration `name:"reveal-window" env:"CARDVAULT_REVEAL_WINDOW" default:"1h" help:"the sliding window reveal budgets count in"`
	RevealsPerCard       int           `name:"reveals-per-card" env:"CARDVAULT_REVEALS_PER_CARD" default:"10" help:"reveals of one card per window, on every surface; past it, 429 with \x60Retry-After\x60"`
	RevealsPerDevice     int           `name:"reveals-per-device" env:"CARDVAULT_REVEALS_PER_DEVICE" default:"30" help:"secure views by one device per window"`
	RevealCardsPerCall   int           `name:"reveal-cards-per-caller" env:"CARDVAULT_REVEAL_CARDS_PER_CALLER" default:"1000" help:"distinct cards one API token reveals per window; size it to the platform"`
	PINCardsPerCaller    int           `name:"pin-cards-per-caller" env:"CARDVAULT_PIN_CARDS_PER_CALLER" default:"1000" help:"distinct cards one API token sets PINs on per PIN window"`
	LookupsPerCaller     int           `name:"lookups-per-caller" env:"CARDVAULT_LOOKUPS_PER_CALLER" default:"100" help:"distinct PANs one API token looks up per look-up window"`
	LookupWindow         time.Duration `name:"lookup-window" env:"CARDVAULT_LOOKUP_WINDOW" default:"1h" help:"the window look-ups count in"`
	ImportsPerCaller     int           `name:"imports-per-caller" env:"CARDVAULT_IMPORTS_PER_CALLER" default:"1000" help:"distinct PANs one API token imports per import window, whether the PAN was new (201) or taken (409); past it both answer 429. Size it to the processor's batches: it bounds how many PANs a stolen \x60cards:write\x60 token can test"`
	ImportWindow         time.Duration `name:"import-window" env:"CARDVAULT_IMPORT_WINDOW" default:"1h" help:"the window imports count in"`
	VerifyWindow         time.Duration `name:"verify-window" env:"CARDVAULT_VERIFY_WINDOW" default:"1h" help:"the window card verifications (CVV, expiry) count in"`
	VerificationsPerCard int           `name:"verifications-per-card" env:"CARDVAULT_VERIFICATIONS_PER_CARD" default:"10" help:"verifications of one card per window, match or not: the guesses of a CVV a stolen \x60cards:verify\x60 token gets; past it, 429"`
	PINTryLimit          int           `name:"pin-try-limit" env:"CARDVAULT_PIN_TRY_LIMIT" default:"3" help:"wrong PINs in a row after which PIN verification answers \x60blocked\x60 until a new PIN is set (1 to 15)"`
	VerifyCardsPerCaller int           `name:"verify-cards-per-caller" env:"CARDVAULT_VERIFY_CARDS_PER_CALLER" default:"10000" help:"distinct cards one API token verifies per window; size it to the authorization host's card-not-present traffic"`
	IdempotencyWindow    time.Duration `name:"idempotency-window" env:"CARDVAULT_IDEMPOTENCY_WINDOW" default:"1h" help:"how long a first answer is kept for replay"`
	DeviceGate           string        `name:"device-gate" env:"CARDVAULT_DEVICE_GATE" default:"on" enum:"on,off" help:"\x60on\x60: an owner with a bound device has its cards refused on routes without a device signature"`
	PINAttemptWindow     time.Duration `name:"pin-attempt-window" env:"CARDVAULT_PIN_ATTEMPT_WINDOW" default:"24h" help:"the window PIN attempts are counted in"`
	PINAttemptsPerCard   int           `name:"pin-attempts-per-card" env:"CARDVAULT_PIN_ATTEMPTS_PER_CARD" default:"5" help:"PIN attempts (good or bad) per card per window; past it, 429"`
}

// tokensFileSetting names the file of API token hashes.
type tokensFileSetting struct {
	TokensFile string `name:"api-tokens-file" env:"CARDVAULT_API_TOKENS_FILE" placeholder:"FILE" help:"hashes of API tokens (\x60cardvault token create\x60 makes it)"`
}

// listenSettings are the listeners and their TLS: files only.
type listenSettings struct {
	Listen            string `name:"listen" env:"CARDVAULT_LISTEN" default:"127.0.0.1:8080" placeholder:"ADDR" help:"listen address"`
	MetricsListen     string `name:"metrics-listen" env:"CARDVAULT_METRICS_LISTEN" placeholder:"ADDR" help:"serve \x60/metrics\x60 on this address alone (e.g. a private interface), and not on the API listener"`
	TLSCertFile       string `name:"tls-cert-file" env:"CARDVAULT_TLS_CERT_FILE" placeholder:"FILE" help:"serve TLS with this certificate (and CARDVAULT_TLS_KEY_FILE)"`
	TLSKeyFile        string `name:"tls-key-file" env:"CARDVAULT_TLS_KEY_FILE" placeholder:"FILE" help:"the TLS certificate's private key"`
	TLSClientCAFile   string `name:"tls-client-ca-file" env:"CARDVAULT_TLS_CLIENT_CA_FILE" placeholder:"FILE" help:"require client certificates that chain to this CA"`
	TLSClientSubjects string `name:"tls-client-subjects-file" env:"CARDVAULT_TLS_CLIENT_SUBJECTS_FILE" placeholder:"FILE" help:"client certificate subjects mapped to scopes"`
}

// transcriptSetting is where ceremonies write their transcripts.
type transcriptSetting struct {
	TranscriptDir string `name:"transcript-dir" env:"CARDVAULT_TRANSCRIPT_DIR" default:"./transcripts" placeholder:"DIR" help:"where ceremonies write transcripts"`
}

// Secrets: read from a file or the environment, never a flag (a flag
// shows in ps) nor a --config file (which is shared and copied).
const (
	envPIN       = "CARDVAULT_PKCS11_PIN"
	envSOPINFile = "CARDVAULT_PKCS11_SO_PIN_FILE"
	envSOPIN     = "CARDVAULT_PKCS11_SO_PIN"
)

// unflagged are the variables no flag binds, as --help and the README's
// configuration table list them after the settings.
var unflagged = []variable{
	{envPIN, "a secret", "the user PIN, if no file"},
	{envSOPINFile, "a secret's file", "file holding the security officer's PIN (preferred): `ceremony export` only"},
	{envSOPIN, "a secret", "the security officer's PIN, if no file: `ceremony export` only"},
	{"SOFTHSM2_CONF", "SoftHSM2 reads it", "SoftHSM2's config (points at the token directory)"},
}

// variable is a variable that no flag binds, and why none does.
type variable struct{ name, why, meaning string }

// vaultConfig is the issuing settings and the budgets as the service
// takes them.
func (s vaultSettings) vaultConfig() vault.Config {
	// A bound left at zero (PINAttempts.PerDevice: no flag sets it) takes
	// the vault's default.
	return vault.Config{
		BIN:               s.BIN,
		ExpiryYears:       s.ExpiryYears,
		IdempotencyWindow: s.IdempotencyWindow,
		DeviceGate:        s.DeviceGate == "on",
		Reveals:           vault.Budget{Window: s.RevealWindow, PerCard: s.RevealsPerCard, PerDevice: s.RevealsPerDevice, PerCaller: s.RevealCardsPerCall},
		PINAttempts:       vault.Budget{Window: s.PINAttemptWindow, PerCard: s.PINAttemptsPerCard, PerCaller: s.PINCardsPerCaller},
		Lookups:           vault.Budget{Window: s.LookupWindow, PerCaller: s.LookupsPerCaller},
		Imports:           vault.Budget{Window: s.ImportWindow, PerCaller: s.ImportsPerCaller},
		Verifications:     vault.Budget{Window: s.VerifyWindow, PerCard: s.VerificationsPerCard, PerCaller: s.VerifyCardsPerCaller},
		PINTryLimit:       s.PINTryLimit,
	}
}

// open opens the database the settings name.
func (s databaseSettings) open(ctx context.Context) (*sqlstore.Store, error) {
	switch {
	case strings.HasPrefix(s.DB, "sqlite:"):
		return sqlstore.OpenSQLite(ctx, strings.TrimPrefix(s.DB, "sqlite:"))
	case strings.HasPrefix(s.DB, "postgres://"), strings.HasPrefix(s.DB, "postgresql://"):
		password, err := readSecretFile("CARDVAULT_DB_PASSWORD_FILE", s.PasswordFile)
		if err != nil {
			return nil, err
		}
		return sqlstore.OpenPostgres(ctx, s.DB, password)
	}
	return nil, errors.New("CARDVAULT_DB: want sqlite:PATH or a postgres:// URL")
}

// config reads the token settings. The PIN comes from a file or the
// environment only: a flag would show it in ps.
func (s tokenSettings) config(log *slog.Logger, catalog hsm.KeyRecords) (hsm.Config, error) {
	cfg := hsm.Config{
		Module:      s.Module,
		TokenLabel:  s.TokenLabel,
		TokenSerial: s.TokenSerial,
		Logger:      log,
		Catalog:     catalog,
		Profile:     s.Profile,
		KeyRefresh:  s.KeyRefresh,
		CallTimeout: s.CallTimeout,
		MaxSessions: s.Sessions,
	}
	var err error
	if s.TokenSlot != "" {
		n, err := strconv.ParseUint(s.TokenSlot, 10, 32)
		if err != nil {
			return cfg, fmt.Errorf("CARDVAULT_TOKEN_SLOT: %q is not a slot number", s.TokenSlot)
		}
		slot := uint(n)
		cfg.Slot = &slot
	}
	pinFromFile := true
	if s.URI != "" {
		for name, set := range map[string]bool{"CARDVAULT_PKCS11_MODULE": s.Module != defaultModule, "CARDVAULT_TOKEN_LABEL": s.TokenLabel != "",
			"CARDVAULT_TOKEN_SERIAL": s.TokenSerial != "", "CARDVAULT_TOKEN_SLOT": s.TokenSlot != ""} {
			if set {
				return cfg, fmt.Errorf("CARDVAULT_PKCS11_URI and %s are both set; the URI selects the module and the token", name)
			}
		}
		u, err := hsm.ParseURI(s.URI)
		if err != nil {
			return cfg, fmt.Errorf("CARDVAULT_PKCS11_URI: %w", err)
		}
		cfg.TokenLabel, cfg.TokenSerial, cfg.Slot = u.TokenLabel, u.TokenSerial, u.Slot
		if u.Module != "" {
			cfg.Module = u.Module
		}
		if u.PINFile != "" {
			if s.PINFile != "" || os.Getenv(envPIN) != "" {
				return cfg, fmt.Errorf("CARDVAULT_PKCS11_URI names a pin-source and CARDVAULT_PKCS11_PIN_FILE or %s is set too; keep one", envPIN)
			}
			if cfg.PIN, err = readFile(u.PINFile); err != nil {
				return cfg, fmt.Errorf("CARDVAULT_PKCS11_URI pin-source: %w", err)
			}
			pinFromFile = false
		}
	}
	if cfg.TokenLabel == "" && cfg.TokenSerial == "" && cfg.Slot == nil {
		cfg.TokenLabel = "cardvault"
	}
	if pinFromFile {
		if cfg.PIN, err = readPIN("CARDVAULT_PKCS11_PIN_FILE", s.PINFile, envPIN, "no HSM PIN"); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// defaultModule is where Debian's softhsm2 package installs its PKCS#11
// module: the development default, as tokenSettings.Module's tag says.
const defaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// open opens the configured token, with the key catalog pinned to
// catalog's records, or unpinned when catalog is nil (the ceremonies that
// make keys, and the bench).
func (s tokenSettings) open(log *slog.Logger, catalog hsm.KeyRecords) (*hsm.Module, error) {
	cfg, err := s.config(log, catalog)
	if err != nil {
		return nil, err
	}
	m, err := hsm.Open(cfg)
	// crypto11 says only "could not find PKCS#11 token" (its error value
	// is unexported): say where the vault looked and what chooses it.
	switch {
	case err == nil:
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		err = fmt.Errorf("%w: the module %s shows no such token; check CARDVAULT_TOKEN_LABEL, CARDVAULT_TOKEN_SERIAL, CARDVAULT_TOKEN_SLOT or CARDVAULT_PKCS11_URI, and for SoftHSM2 SOFTHSM2_CONF (beside scripts/dev.sh, `. .dev/env` sets them)", err, cfg.Module)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)):
		err = fmt.Errorf("%w: the token refused the PIN from %s", err, s.pinSource())
	}
	return m, err
}

// pinSource names where config took the user PIN from, for a message
// that must not show the PIN itself.
func (s tokenSettings) pinSource() string {
	if strings.Contains(s.URI, "pin-source") {
		return "the pin-source of CARDVAULT_PKCS11_URI"
	}
	if s.PINFile != "" {
		return fmt.Sprintf("CARDVAULT_PKCS11_PIN_FILE (%s)", s.PINFile)
	}
	return envPIN
}

// vaultSettingsOpen is what opens the vault's records with the token: the
// token, the database and the audit sealing.
type vaultRecords struct {
	tokenSettings `embed:"" group:"token"`
	storeSettings `embed:"" group:"database"`
}

// openServing opens the token for the request path (a Serving handle,
// with no ceremony operation) and the database, and has the store
// checkpoint its audit chains with the token's audit key. The caller
// closes the store before the token: closing checkpoints the chains.
func (s vaultRecords) openServing(ctx context.Context, log *slog.Logger) (*hsm.Serving, *sqlstore.Store, error) {
	m, store, err := s.openPinned(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	return hsm.ServingOf(m), store, nil
}

// openPinned is openServing for the ceremony-side commands that need the
// whole module with the key catalog pinned (a rewrap's dry run).
func (s vaultRecords) openPinned(ctx context.Context, log *slog.Logger) (*hsm.Module, *sqlstore.Store, error) {
	store, err := s.databaseSettings.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	// The server uses only the keys the ceremonies recorded in the store.
	m, err := s.tokenSettings.open(log, store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	store.UseAuditKey(m, s.CheckpointEvery)
	store.CheckpointEvery(s.CheckpointInterval)
	store.PruneInBackground()
	return m, store, nil
}

// readSecretFile reads the secret in the file a setting names, without its
// trailing newline; "" when the setting is empty.
func readSecretFile(setting, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	secret, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", setting, err)
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

// readPIN reads a PIN from the file a setting names (preferred) or from
// the environment variable env; missing says what is missing.
func readPIN(fileSetting, path, env, missing string) (string, error) {
	pin, err := readSecretFile(fileSetting, path)
	switch {
	case err != nil:
		return "", err
	case pin != "":
		return pin, nil
	case os.Getenv(env) != "":
		return os.Getenv(env), nil
	}
	return "", fmt.Errorf("%s: set %s (preferred) or %s", missing, fileSetting, env)
}
