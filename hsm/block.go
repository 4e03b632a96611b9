package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// EncryptBlock enciphers one 16-byte block with AES-ECB under a PEK version
// inside the token: the primitive ISO 9564-1 format 4 PIN blocks are built
// on. The caller clears its copy of the block.
func (m *Module) EncryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error) {
	return m.ecb(ctx, PEK, version, block, true)
}

// DecryptBlock deciphers one block under a PEK version; PIN translation
// between PEK versions uses it.
func (m *Module) DecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error) {
	return m.ecb(ctx, PEK, version, block, false)
}

// ecb enciphers or deciphers one block with AES-ECB under a version of
// an AES purpose's key (the PEK, or a zone PIN key, which only deciphers).
func (m *Module) ecb(ctx context.Context, p Purpose, version uint32, block []byte, encrypt bool) ([]byte, error) {
	if len(block) != 16 {
		return nil, fmt.Errorf("hsm: AES block of %d bytes, want 16", len(block))
	}
	var out []byte
	err := m.do(ctx, "aes-ecb", func(c *conn) error {
		return c.withSession(func(sh pkcs11.SessionHandle) error {
			key, err := c.handle(sh, Label(p, version), classSecret)
			if err != nil {
				return err
			}
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_ECB, nil)}
			if encrypt {
				if err := c.p.EncryptInit(sh, mech, key); err != nil {
					return describe("C_EncryptInit(AES_ECB)", err)
				}
				out, err = c.p.Encrypt(sh, block)
				return describeIf("C_Encrypt(AES_ECB)", err)
			}
			if err := c.p.DecryptInit(sh, mech, key); err != nil {
				return describe("C_DecryptInit(AES_ECB)", err)
			}
			out, err = c.p.Decrypt(sh, block)
			return describeIf("C_Decrypt(AES_ECB)", err)
		})
	})
	return out, opaque(err)
}
