// Package p11test holds what tests of more than one package do to a token
// through PKCS#11 as an attacker with the user PIN would.
package p11test

import "github.com/miekg/pkcs11"

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
