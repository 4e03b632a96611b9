package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	ctx, stdin, stdout, log, out, comps := in.ctx, in.stdin, in.stdout, in.log, &ce.Out, &ce.componentFlags
	if err := comps.validate(); err != nil {
		return err
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("--out %s exists; refusing to overwrite", *out)
	}
	soPIN, err := readPIN(envSOPINFile, os.Getenv(envSOPINFile), envSOPIN, "the export needs the security officer's PIN")
	if err != nil {
		return err
	}
	c, kek, t, err := ce.beginWithKEK(ctx, "export", comps, stdin, stdout, log)
	if err != nil {
		return err
	}
	defer c.close()
	defer clear(kek)
	b, err := c.m.Export(ctx, soPIN, kek)
	if err != nil {
		return err
	}
	body, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := writeNewFile(*out, append(body, '\n')); err != nil {
		return err
	}
	t.printf("wrapping: KCV %s, %s\n\n", b.WrappingKCV, b.Mechanism)
	if err := printBackupKeys(t, b, "exported"); err != nil {
		return err
	}
	t.printf("\nbackup:   %s sha256 %x\n", *out, sha256.Sum256(append(body, '\n')))
	t.printf("\nresult: %d key object(s) exported\n", len(b.Keys))
	return t.save(ctx)
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
	ctx, stdin, stdout, log, in, comps := inv.ctx, inv.stdin, inv.stdout, inv.log, &ci.In, &ci.componentFlags
	if err := comps.validate(); err != nil {
		return err
	}
	raw, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var b hsm.Backup
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	c, kek, t, err := ci.beginWithKEK(ctx, "import", comps, stdin, stdout, log)
	if err != nil {
		return err
	}
	defer c.close()
	defer clear(kek)
	t.printf("backup:   %s sha256 %x, from token %s serial %s, made %s\n", *in, sha256.Sum256(raw), b.Token.Label, b.Token.Serial, b.Created.Format("2006-01-02T15:04:05Z"))
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
}

// beginWithKEK begins a backup ceremony: it opens the token, forms the
// wrapping key from the custodians' components and starts the transcript
// with them. The caller clears the key and closes the ceremony.
func (cf ceremonyFlags) beginWithKEK(ctx context.Context, name string, comps *componentFlags, stdin io.Reader, stdout io.Writer, log *slog.Logger) (*ceremony, []byte, *transcript, error) {
	c, err := cf.begin(ctx, name, log, withStore)
	if err != nil {
		return nil, nil, nil, err
	}
	kek, custodians, err := newComponentReader(c.m, hsm.KindAES, stdin, stdout).combine(ctx, comps)
	if err != nil {
		c.close()
		return nil, nil, nil, err
	}
	t := c.start(ctx, stdout, name)
	printCustodians(t, custodians)
	return c, kek, t, nil
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
