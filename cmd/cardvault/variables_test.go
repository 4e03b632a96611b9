package main

// The variables the tests set, by name: the binary reads them through
// settings.go's tags, which TestConfigurationTableIsTheBinarys checks
// against README.md.
const (
	envAuditEvery        = "CARDVAULT_AUDIT_CHECKPOINT_EVERY"
	envDB                = "CARDVAULT_DB"
	envDeviceGate        = "CARDVAULT_DEVICE_GATE"
	envHSMProfile        = "CARDVAULT_HSM_PROFILE"
	envImportsPerCaller  = "CARDVAULT_IMPORTS_PER_CALLER"
	envKeyRefresh        = "CARDVAULT_KEY_REFRESH"
	envListen            = "CARDVAULT_LISTEN"
	envLookupsPerCaller  = "CARDVAULT_LOOKUPS_PER_CALLER"
	envMetricsListen     = "CARDVAULT_METRICS_LISTEN"
	envModule            = "CARDVAULT_PKCS11_MODULE"
	envPINCardsPerCaller = "CARDVAULT_PIN_CARDS_PER_CALLER"
	envPINFile           = "CARDVAULT_PKCS11_PIN_FILE"
	envPINPerCard        = "CARDVAULT_PIN_ATTEMPTS_PER_CARD"
	envPINWindow         = "CARDVAULT_PIN_ATTEMPT_WINDOW"
	envPKCS11URI         = "CARDVAULT_PKCS11_URI"
	envPerCard           = "CARDVAULT_REVEALS_PER_CARD"
	envPerDevice         = "CARDVAULT_REVEALS_PER_DEVICE"
	envRevealsPerCaller  = "CARDVAULT_REVEAL_CARDS_PER_CALLER"
	envTLSCert           = "CARDVAULT_TLS_CERT_FILE"
	envTLSClientCA       = "CARDVAULT_TLS_CLIENT_CA_FILE"
	envTLSKey            = "CARDVAULT_TLS_KEY_FILE"
	envTLSSubjects       = "CARDVAULT_TLS_CLIENT_SUBJECTS_FILE"
	envTokenLabel        = "CARDVAULT_TOKEN_LABEL"
	envTokensFile        = "CARDVAULT_API_TOKENS_FILE"
	envTranscripts       = "CARDVAULT_TRANSCRIPT_DIR"
	envWindow            = "CARDVAULT_REVEAL_WINDOW"
)
