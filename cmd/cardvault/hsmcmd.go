package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/cardvault/cardvault/hsm"
)

// hsmCmd is `cardvault hsm`.
type hsmCmd struct {
	Probe hsmProbeCmd `cmd:"" help:"how the token behaves where PKCS#11 tokens differ (GCM IV, trusted wrap, mechanisms)"`
}

// hsmProbeCmd is `cardvault hsm probe`: how the configured token behaves
// where PKCS#11 tokens differ, found by trials on session objects.
type hsmProbeCmd struct {
	tokenSettings `embed:"" group:"token"`
}

func (c *hsmProbeCmd) Run(in *invocation) error {
	ctx, stdout := in.ctx, in.stdout
	m, err := c.open(in.log, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	p, err := m.Profile(ctx)
	if err != nil {
		return err
	}
	return printProfile(stdout, p)
}

// profileMeaning says what each profile value makes the vault do.
var profileMeaning = map[string]string{
	"gcm-iv=honoured":       "the token seals under the vault's random IV",
	"gcm-iv=overwritten":    "the token draws its own IV; records keep the one it reports",
	"gcm-iv=refused":        "the token refuses a caller's IV; it fills a zeroed buffer, which records keep",
	"raw-rsa=yes":           "PIN ciphertexts: CKM_RSA_X_509 in the token, PKCS#1 v1.5 decoded here in constant time",
	"raw-rsa=no":            "PIN ciphertexts: CKM_RSA_PKCS in the token; a refused one decodes as the one invalid answer",
	"oaep-sha256=token":     "PIN JWEs (RSA-OAEP-256): OAEP with SHA-256 in the token",
	"oaep-sha256=raw":       "PIN JWEs (RSA-OAEP-256): CKM_RSA_X_509 in the token, OAEP decoded here",
	"oaep-sha256=none":      "PIN JWEs (RSA-OAEP-256): not possible; that route answers 503 naming the mechanism",
	"oaep-sha256=untried":   "PIN JWEs (RSA-OAEP-256): tried on the first set_pin key",
	"kcv=cmac":              "KCVs: AES-CMAC of a zero block",
	"kcv=ecb":               "KCVs: legacy AES-ECB of a zero block",
	"wrap=pad":              "backups: CKM_AES_KEY_WRAP_PAD (RFC 5649)",
	"wrap=plain":            "backups: CKM_AES_KEY_WRAP (RFC 3394), secret keys only",
	"wrap=none":             "backups: none by wrapping; the vendor's cloning or replication",
	"trusted-wrap=enforced": "keys leave only wrapped under a key the security officer trusts",
	"trusted-wrap=ignored":  "the token wraps any key under any key: keys are made never extractable",
	"copyable=accepted":     "token keys are made CKA_COPYABLE=false",
	"copyable=refused":      "the token refuses CKA_COPYABLE on token keys; keys are made without it",
	"copyable=untried":      "no key made yet on this connection",
}

// printProfile writes a token's profile, one setting a line with what it
// makes the vault do, then the mechanisms.
func printProfile(w io.Writer, p hsm.Profile) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "token:\t%s (%s, %s, serial %s)\n", p.Token.Label, p.Token.Model, p.Token.Manufacturer, p.Token.Serial)
	fmt.Fprintf(tw, "profile:\t%s\n", p.Name())
	if len(p.Forced) > 0 {
		fmt.Fprintf(tw, "forced by configuration:\t%s\n", strings.Join(p.Forced, ", "))
	}
	for _, setting := range strings.Split(p.Name(), ",") {
		key, _, _ := strings.Cut(setting, "=")
		fmt.Fprintf(tw, "%s:\t%s\n", key, profileMeaning[setting])
	}
	for _, mech := range p.Mechanisms {
		have := "listed"
		if !mech.Listed {
			have = "MISSING"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", mech.Name, have)
	}
	return tw.Flush()
}
