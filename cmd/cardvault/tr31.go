package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/tr31"
)

// ceremonyImportTR31Cmd imports a key that arrives as an ANSI X9.143
// (TR-31) version D key block, as a zone partner sends a zone PIN key:
// the custodians' components form the key-block protection key (KBPK),
// the block is authenticated and unwrapped under it, its header is
// checked against the purpose, and the key becomes the purpose's next
// version. The KBPK and the key exist in clear only in this process,
// for the ceremony, in cleared buffers; the KBPK never enters the token.
type ceremonyImportTR31Cmd struct {
	ceremonyFlags  `embed:""`
	Purpose        string `required:"" placeholder:"PURPOSE" help:"the key the block carries: zpk (a zone PIN key)"`
	In             string `required:"" placeholder:"FILE" help:"the file holding the TR-31 key block, version D, as the sender gave it"`
	componentFlags `embed:""`
	Backup         string `help:"${backup_usage} (default: the active version's, else vendor)"`
}

func (c *ceremonyImportTR31Cmd) Run(in *invocation) error { return flagForm(in, c) }

// tr31Usages is what a block must say to be imported as a purpose: its
// key usage, and the modes of use that let the vault do its part.
var tr31Usages = map[hsm.Purpose]struct {
	usage string
	modes string
}{
	// P0 is PIN encryption; the vault deciphers (D) or may do both (B).
	hsm.ZonePIN: {"P0", "DB"},
}

func (it *ceremonyImportTR31Cmd) run(in *invocation) error {
	ctx := in.ctx
	p, err := hsm.ParsePurpose(it.Purpose)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	want, ok := tr31Usages[p]
	if !ok {
		return fmt.Errorf("--purpose %s: only a zone PIN key (zpk) is imported from a TR-31 key block", p)
	}
	raw, err := os.ReadFile(it.In)
	if err != nil {
		return err
	}
	block := strings.TrimSpace(string(raw))
	return it.underKEK(in, "import-tr31", &it.componentFlags, func(c *ceremony, kbpk []byte, t *transcript) error {
		previous, keyBackup, err := c.prepareNext(ctx, p, it.Backup)
		if err != nil {
			return err
		}
		kbpkKCV, err := c.m.ValueKCV(ctx, hsm.KindAES, kbpk)
		if err != nil {
			return err
		}
		h, key, err := tr31.Unwrap(kbpk, block)
		if err != nil {
			return fmt.Errorf("%s: %w", it.In, err)
		}
		defer clear(key)
		switch {
		case h.Usage != want.usage || h.Algorithm != 'A':
			return fmt.Errorf("%s: the block carries key usage %s, algorithm %c; a %s key is usage %s, AES (A)", it.In, h.Usage, h.Algorithm, p, want.usage)
		case !strings.ContainsRune(want.modes, rune(h.ModeOfUse)):
			return fmt.Errorf("%s: mode of use %c does not let the vault decipher; want one of %s", it.In, h.ModeOfUse, want.modes)
		case len(key) != 32:
			return fmt.Errorf("%s: the block carries an AES-%d key; a %s key is AES-256", it.In, len(key)*8, p)
		}
		t.printf("purpose:  %s (%s), from a TR-31 key block\n", p, p.Kind())
		t.printf("block:    %s sha256 %x\n", it.In, sha256.Sum256([]byte(block)))
		t.printf("header:   version D, usage %s, algorithm %c, mode %c, key version %s, exportability %c, %d optional block(s)\n",
			h.Usage, h.Algorithm, h.ModeOfUse, h.KeyVersion, h.Exportability, len(h.Optional))
		t.printf("kbpk:     KCV %s, formed from the components above, authenticated the block\n", kbpkKCV)
		t.printf("backup:   %s\n", backupMeaning[keyBackup])
		return c.concludeImport(ctx, t, "imported", p, previous+1, key)
	})
}
