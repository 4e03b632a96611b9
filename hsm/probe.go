package hsm

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// requiredMechanisms are the mechanisms the vault cannot work without.
// The rest of a profile's (CMAC, raw RSA, OAEP, key wrap) have another
// path or a route that says it cannot serve (profile.go).
var requiredMechanisms = []struct {
	mech uint
	name string
}{
	{pkcs11.CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN"},
	{pkcs11.CKM_AES_GCM, "CKM_AES_GCM"},
	{pkcs11.CKM_AES_ECB, "CKM_AES_ECB"},
	{pkcs11.CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN"},
	{pkcs11.CKM_SHA256_HMAC, "CKM_SHA256_HMAC"},
	{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN"},
	{pkcs11.CKM_RSA_PKCS, "CKM_RSA_PKCS"},
}

// Probe checks that the token offers every mechanism the vault uses and
// names the missing ones. It also serves as the readiness check: it fails
// when the token cannot be reached.
func (m *Module) Probe(ctx context.Context) error {
	var missing []string
	err := m.do(ctx, "probe", func(c *conn) error {
		// The mechanism list was read when the connection was made.
		missing = missing[:0]
		for _, r := range requiredMechanisms {
			if !c.listed[r.mech] {
				missing = append(missing, r.name)
			}
		}
		// A cheap call on a real session proves the login still holds.
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			info, err := c.p.GetSessionInfo(sh)
			if err != nil {
				return describe("C_GetSessionInfo", err)
			}
			if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
				return describe("C_GetSessionInfo", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("hsm: the %s lacks %s", m.cfg.selector(), strings.Join(missing, ", "))
	}
	return nil
}
