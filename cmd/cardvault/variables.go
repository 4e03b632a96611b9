package main

import (
	"fmt"
	"strings"
)

// configuration is every environment variable the vault reads, with its
// default and meaning: `cardvault serve --help` prints it, and README.md's
// configuration table must say the same, row for row
// (TestConfigurationTableIsTheBinarys). Meanings are Markdown.
var configuration = []variable{
	{[]string{"CARDVAULT_LISTEN"}, "127.0.0.1:8080", "listen address"},
	{[]string{"CARDVAULT_METRICS_LISTEN"}, "", "serve `/metrics` on this address alone (e.g. a private interface), and not on the API listener"},
	{[]string{"CARDVAULT_DB"}, "sqlite:.dev/cardvault.db", "`sqlite:PATH`, or `postgres://user@host:5432/db?sslmode=…` (pgx)"},
	{[]string{"CARDVAULT_DB_PASSWORD_FILE"}, "", "file holding the PostgreSQL password, when it is not in the URL"},
	{[]string{"CARDVAULT_PKCS11_MODULE"}, "/usr/lib/softhsm/libsofthsm2.so", "PKCS#11 library: any vendor's (mount it read-only into the container)"},
	{[]string{"CARDVAULT_TOKEN_LABEL"}, "cardvault", "token label"},
	{[]string{"CARDVAULT_TOKEN_SERIAL", "CARDVAULT_TOKEN_SLOT"}, "", "more selectors; every one given must match, and exactly one token may"},
	{[]string{"CARDVAULT_PKCS11_URI"}, "", "an RFC 7512 `pkcs11:` URI (`token`, `serial`, `slot-id`, `module-path`, `pin-source=file:`) instead of the module, token and PIN variables ([docs/hsm.md](docs/hsm.md))"},
	{[]string{"CARDVAULT_HSM_PROFILE"}, "", "force settings of the token's profile, as `cardvault hsm probe` prints them, e.g. `gcm-iv=refused,raw-rsa=no`"},
	{[]string{"CARDVAULT_PKCS11_PIN_FILE"}, "", "file holding the user PIN (preferred)"},
	{[]string{"CARDVAULT_PKCS11_PIN"}, "", "the user PIN, if no file"},
	{[]string{"CARDVAULT_API_TOKENS_FILE"}, "", "hashes of API tokens"},
	{[]string{"CARDVAULT_TRANSCRIPT_DIR"}, "./transcripts", "where ceremonies write transcripts"},
	{[]string{"CARDVAULT_BIN"}, "400000", "6–8 digit BIN of sandbox-issued PANs"},
	{[]string{"CARDVAULT_EXPIRY_YEARS"}, "3", "years until issued cards expire (end of month)"},
	{[]string{"CARDVAULT_REVEAL_WINDOW"}, "1h", "the sliding window reveal budgets count in"},
	{[]string{"CARDVAULT_REVEALS_PER_CARD"}, "10", "reveals of one card per window, on every surface; past it, 429 with `Retry-After`"},
	{[]string{"CARDVAULT_REVEALS_PER_DEVICE"}, "30", "secure views by one device per window"},
	{[]string{"CARDVAULT_REVEAL_CARDS_PER_CALLER"}, "1000", "distinct cards one API token reveals per window; size it to the platform"},
	{[]string{"CARDVAULT_PIN_CARDS_PER_CALLER"}, "1000", "distinct cards one API token sets PINs on per PIN window"},
	{[]string{"CARDVAULT_LOOKUPS_PER_CALLER"}, "100", "distinct PANs one API token looks up per look-up window"},
	{[]string{"CARDVAULT_LOOKUP_WINDOW"}, "1h", "the window look-ups count in"},
	{[]string{"CARDVAULT_IMPORTS_PER_CALLER"}, "1000", "distinct PANs one API token imports per import window, whether the PAN was new (201) or taken (409); past it both answer 429. Size it to the processor's batches: it bounds how many PANs a stolen `cards:write` token can test"},
	{[]string{"CARDVAULT_IMPORT_WINDOW"}, "1h", "the window imports count in"},
	{[]string{"CARDVAULT_IDEMPOTENCY_WINDOW"}, "1h", "how long a first answer is kept for replay"},
	{[]string{"CARDVAULT_DEVICE_GATE"}, "on", "`on`: an owner with a bound device has its cards refused on routes without a device signature"},
	{[]string{"CARDVAULT_PIN_ATTEMPT_WINDOW"}, "24h", "the window PIN attempts are counted in"},
	{[]string{"CARDVAULT_PIN_ATTEMPTS_PER_CARD"}, "5", "PIN attempts (good or bad) per card per window; past it, 429"},
	{[]string{"CARDVAULT_AUDIT_CHECKPOINT_EVERY"}, "100", "audit entries per chain between HMAC checkpoints"},
	{[]string{"CARDVAULT_AUDIT_CHECKPOINT_INTERVAL"}, "5s", "a chain with entries past its last checkpoint is checkpointed within this time: what a killed process can leave unsealed"},
	{[]string{"CARDVAULT_PKCS11_SO_PIN_FILE", "CARDVAULT_PKCS11_SO_PIN"}, "", "the security officer's PIN, from a file (preferred) or the variable: `ceremony export` only"},
	{[]string{"CARDVAULT_HSM_CALL_TIMEOUT"}, "10s", "bound on one HSM operation, the wait for a session included; past it, 503"},
	{[]string{"CARDVAULT_HSM_SESSIONS"}, "32", "sessions kept for operations (at least 2); a token that reports fewer (`ulMaxSessionCount`, less 2 for the login and key generation) lowers it"},
	{[]string{"CARDVAULT_KEY_REFRESH"}, "5s", "how long a server trusts its list of key versions; a rotation in another process is in use within this time"},
	{[]string{"CARDVAULT_TLS_CERT_FILE", "CARDVAULT_TLS_KEY_FILE"}, "", "serve TLS with this certificate and key"},
	{[]string{"CARDVAULT_TLS_CLIENT_CA_FILE"}, "", "require client certificates that chain to this CA"},
	{[]string{"CARDVAULT_TLS_CLIENT_SUBJECTS_FILE"}, "", "client certificate subjects mapped to scopes"},
	{[]string{"SOFTHSM2_CONF"}, "", "SoftHSM2's config (points at the token directory)"},
}

// variable is one row of the configuration table.
type variable struct {
	names   []string
	def     string
	meaning string
}

// configurationHelp is the configuration as a terminal shows it.
func configurationHelp() string {
	var b strings.Builder
	b.WriteString("\nconfiguration (environment; secrets from files or the environment, never flags):\n")
	for _, v := range configuration {
		fmt.Fprintf(&b, "  %s", strings.Join(v.names, ", "))
		if v.def != "" {
			fmt.Fprintf(&b, " (default %s)", v.def)
		}
		fmt.Fprintf(&b, "\n      %s\n", strings.ReplaceAll(v.meaning, "`", ""))
	}
	return b.String()
}
