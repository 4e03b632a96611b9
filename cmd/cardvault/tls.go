package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cardvault/cardvault/httpapi"
)

// serverTLS builds the listener's TLS configuration, or nil when no
// certificate is configured. TLS 1.3, or TLS 1.2 with ECDHE and AEAD
// suites only. With a client CA, every client must present a certificate
// that chains to it.
func (s listenSettings) serverTLS() (*tls.Config, map[string][]string, error) {
	const envTLSCert, envTLSKey, envTLSClientCA, envTLSSubjects = "CARDVAULT_TLS_CERT_FILE", "CARDVAULT_TLS_KEY_FILE", "CARDVAULT_TLS_CLIENT_CA_FILE", "CARDVAULT_TLS_CLIENT_SUBJECTS_FILE"
	certFile, keyFile, caFile, subjectsFile := s.TLSCertFile, s.TLSKeyFile, s.TLSClientCAFile, s.TLSClientSubjects
	switch {
	case certFile == "" && keyFile == "" && caFile == "" && subjectsFile == "":
		return nil, nil, nil
	case certFile == "" || keyFile == "":
		return nil, nil, fmt.Errorf("TLS needs both %s and %s", envTLSCert, envTLSKey)
	case subjectsFile != "" && caFile == "":
		return nil, nil, fmt.Errorf("%s maps client certificates, which need %s", envTLSSubjects, envTLSClientCA)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", envTLSCert, envTLSKey, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3's suites are all AEAD
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
	}
	if caFile == "" {
		return cfg, nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", envTLSClientCA, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("%s: no PEM certificate in %s", envTLSClientCA, caFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	if subjectsFile == "" {
		return cfg, nil, nil
	}
	subjects, err := readSubjects(subjectsFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", envTLSSubjects, err)
	}
	return cfg, subjects, nil
}

// readSubjects reads "scope,scope SUBJECT" lines; # starts a comment.
func readSubjects(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		scopeList, subject, ok := strings.Cut(line, " ")
		subject = strings.TrimSpace(subject)
		if !ok || subject == "" {
			return nil, fmt.Errorf("line %d: want \"scope,scope SUBJECT\"", n)
		}
		scopes := strings.Split(scopeList, ",")
		for _, s := range scopes {
			if !slices.Contains(httpapi.Scopes, s) {
				return nil, fmt.Errorf("line %d: unknown scope %q (want some of %s)", n, s, strings.Join(httpapi.Scopes, ","))
			}
		}
		if _, dup := out[subject]; dup {
			return nil, fmt.Errorf("line %d: subject %q appears twice", n, subject)
		}
		out[subject] = scopes
	}
	if len(out) == 0 {
		return nil, errors.New("maps no subject")
	}
	return out, sc.Err()
}
