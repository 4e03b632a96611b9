package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
)

// ceremonyExport wraps every key in the token under a key-encryption key
// formed from custodian components and writes the backup file.
type ceremonyExportCmd struct {
	ceremonyFlags  `embed:""`
	Out            string `required:"" placeholder:"FILE" help:"the backup file to write (refuses to overwrite)"`
	componentFlags `embed:""`
}

func (c *ceremonyExportCmd) Run(in *invocation) error { return flagForm(in, c) }

func (ce *ceremonyExportCmd) run(in *invocation) error {
	ctx := in.ctx
	if _, err := os.Stat(ce.Out); err == nil {
		return fmt.Errorf("--out %s exists; refusing to overwrite", ce.Out)
	}
	soPIN, err := readPIN(envSOPINFile, os.Getenv(envSOPINFile), envSOPIN, "the export needs the security officer's PIN")
	if err != nil {
		return err
	}
	return ce.underKEK(in, "export", &ce.componentFlags, func(c *ceremony, kek []byte, t *transcript) error {
		b, err := c.m.Export(ctx, soPIN, kek)
		if err != nil {
			return err
		}
		body, err := json.MarshalIndent(b, "", "  ")
		if err != nil {
			return err
		}
		if err := writeNewFile(ce.Out, append(body, '\n')); err != nil {
			return err
		}
		t.printf("wrapping: KCV %s, %s\n\n", b.WrappingKCV, b.Mechanism)
		if err := printBackupKeys(t, b, "exported"); err != nil {
			return err
		}
		t.printf("\nbackup:   %s sha256 %x\n", ce.Out, sha256.Sum256(append(body, '\n')))
		t.printf("\nresult: %d key object(s) exported\n", len(b.Keys))
		return t.save(ctx)
	})
}

// ceremonyImport restores a backup into this token, unwrapping under the
// key the custodians' components form, and checks every key's KCV or
// fingerprint against the backup's.
type ceremonyImportCmd struct {
	ceremonyFlags  `embed:""`
	In             string `required:"" placeholder:"FILE" help:"the backup file to restore"`
	componentFlags `embed:""`
}

func (c *ceremonyImportCmd) Run(in *invocation) error { return flagForm(in, c) }

func (ci *ceremonyImportCmd) run(inv *invocation) error {
	ctx := inv.ctx
	raw, err := os.ReadFile(ci.In)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var b hsm.Backup
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("%s: %w", ci.In, err)
	}
	return ci.underKEK(inv, "import", &ci.componentFlags, func(c *ceremony, kek []byte, t *transcript) error {
		t.printf("backup:   %s sha256 %x, from token %s serial %s, made %s\n", ci.In, sha256.Sum256(raw), b.Token.Label, b.Token.Serial, b.Created.Format("2006-01-02T15:04:05Z"))
		if err := c.m.Import(ctx, kek, &b); err != nil {
			return err
		}
		for _, k := range b.Keys {
			if k.Class == "public" {
				continue
			}
			if err := keyceremony.RecordKey(ctx, c.m, c.store, k.Label, c.recordedBy()); err != nil {
				return err
			}
		}
		// A public half's end date, which servers read from the catalog.
		for _, k := range b.Keys {
			if k.Class != "public" || k.EndDate == "" {
				continue
			}
			day, err := time.Parse(time.DateOnly, k.EndDate)
			if err != nil {
				return fmt.Errorf("backup: %s end date: %w", k.Label, err)
			}
			if err := c.store.SetKeyEndDate(ctx, c.tok.Serial, k.Label, day); err != nil {
				return err
			}
		}
		t.printf("wrapping: KCV %s, %s\n\n", b.WrappingKCV, b.Mechanism)
		if err := printBackupKeys(t, &b, "restored, check matches, recorded"); err != nil {
			return err
		}
		t.printf("\nresult: %d key object(s) restored\n", len(b.Keys))
		return t.save(ctx)
	})
}

// underKEK runs a backup ceremony's work: it opens the token, forms the
// wrapping key from the custodians' components, starts the transcript
// with them, and afterwards clears the key and closes the token.
func (cf ceremonyFlags) underKEK(in *invocation, name string, comps *componentFlags, work func(c *ceremony, kek []byte, t *transcript) error) error {
	if err := comps.validate(); err != nil {
		return err
	}
	c, err := cf.begin(in.ctx, name, in.log, withStore)
	if err != nil {
		return err
	}
	defer c.close()
	kek, custodians, err := newComponentReader(c.m, hsm.KindAES, in.stdin, in.stdout).combine(in.ctx, comps)
	if err != nil {
		return err
	}
	defer clear(kek)
	t := c.start(in.ctx, in.stdout, name)
	printCustodians(t, custodians)
	return work(c, kek, t)
}

func printBackupKeys(out io.Writer, b *hsm.Backup, result string) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "LABEL\tCLASS\tCHECK\tRESULT\n")
	for _, k := range b.Keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Label, k.Class, k.Check, result)
	}
	return tw.Flush()
}

// writeNewFile writes a file that must not exist yet, readable by its
// owner only.
func writeNewFile(path string, body []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
