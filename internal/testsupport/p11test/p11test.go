// Package p11test holds what tests of more than one package do to a token:
// through PKCS#11 as an attacker with the user PIN would, or to its
// configuration as a token without some mechanisms.
package p11test

import (
	"errors"
	"os"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// VaultMechanisms are the mechanisms cardvault uses or probes for, by the
// names SoftHSM2's configuration takes.
var VaultMechanisms = []string{
	"CKM_AES_KEY_GEN", "CKM_AES_GCM", "CKM_AES_ECB", "CKM_AES_CMAC",
	"CKM_GENERIC_SECRET_KEY_GEN", "CKM_SHA256_HMAC",
	"CKM_RSA_PKCS_KEY_PAIR_GEN", "CKM_RSA_PKCS", "CKM_RSA_X_509", "CKM_RSA_PKCS_OAEP",
	"CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD",
}

// WithoutMechanisms restricts the SoftHSM2 token configured in conf to
// VaultMechanisms less drop. SoftHSM2 honours an allow-list in
// slots.mechanisms (2.6.1 does not take "ALL,-CKM_X") and then neither
// lists nor performs the rest: a token without them.
func WithoutMechanisms(conf string, drop ...string) error {
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	allowed := slices.DeleteFunc(slices.Clone(VaultMechanisms), func(m string) bool { return slices.Contains(drop, m) })
	restricted := strings.Replace(string(b), "slots.mechanisms = ALL", "slots.mechanisms = "+strings.Join(allowed, ","), 1)
	if restricted == string(b) {
		return errors.New("p11test: the SoftHSM2 configuration has no slots.mechanisms = ALL line to restrict")
	}
	return os.WriteFile(conf, []byte(restricted), 0o600)
}

// PlantTemplate is a secret key of a known value (32 zero bytes) under a
// vault label, as anyone with the user PIN can create it: not sensitive,
// extractable, every usage. keyType is CKK_AES or CKK_GENERIC_SECRET.
func PlantTemplate(label string, keyType uint) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)),
	}
}
