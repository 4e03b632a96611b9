package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
)

// componentFiles collects repeated --component-file flags.
type componentFiles []string

func (c *componentFiles) String() string     { return strings.Join(*c, ",") }
func (c *componentFiles) Set(v string) error { *c = append(*c, v); return nil }

// componentFlags are the flags of every ceremony that takes components.
type componentFlags struct {
	n     *int
	files componentFiles
}

func addComponentFlags(fs *flag.FlagSet) *componentFlags {
	cf := &componentFlags{}
	cf.n = fs.Int("components", 0, "how many custodian components form the key (2 to 9)")
	fs.Var(&cf.files, "component-file", "a custodian's component file (custodian:, component:, kcv: lines); repeat per custodian, or omit to be prompted")
	return cf
}

func (cf *componentFlags) validate() error {
	switch {
	case *cf.n < 2 || *cf.n > 9:
		return fmt.Errorf("--components %d: want 2 to 9", *cf.n)
	case len(cf.files) != 0 && len(cf.files) != *cf.n:
		return fmt.Errorf("--component-file given %d times for %d components: give one per custodian, or none to be prompted", len(cf.files), *cf.n)
	}
	return nil
}

// custodianRecord is what a transcript keeps of a component.
// componentReader takes components from files or from a prompt.
type componentReader struct {
	m      keyceremony.KCVs
	files  []string // component forms, one per component, or none: the prompt
	kind   hsm.Kind
	in     *bufio.Reader
	inFile *os.File // stdin, when it is a terminal: components are read without echo
	prompt io.Writer
}

func newComponentReader(m *hsm.Module, kind hsm.Kind, stdin io.Reader, prompt io.Writer) *componentReader {
	cr := &componentReader{m: m, kind: kind, in: bufio.NewReader(stdin), prompt: prompt}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cr.inFile = f
	}
	return cr
}

// combine reads every component and returns their XOR with the
// custodians' records (keyceremony.Combine). The caller clears the key.
func (cr *componentReader) combine(ctx context.Context, cf *componentFlags) ([]byte, []keyceremony.Custodian, error) {
	cr.files = cf.files
	return keyceremony.Combine(ctx, cr.m, cr.kind, *cf.n, cr, cr.prompt)
}

// Component reads component i from its form, or from the prompt.
func (cr *componentReader) Component(i int) (keyceremony.Component, error) {
	if len(cr.files) > 0 {
		return keyceremony.ReadComponentForm(cr.files[i-1])
	}
	name, value, err := cr.promptComponent(i)
	return keyceremony.Component{Custodian: name, Value: value}, err
}

// Confirm asks a custodian at the prompt to type their form's KCV.
func (cr *componentReader) Confirm(_ int, custodian string, kcv hsm.CheckValue) (string, error) {
	fmt.Fprintf(cr.prompt, "custodian %s, type the %s KCV on your component form to confirm: ", custodian, kcv.Method)
	return cr.line()
}

// promptComponent asks for a custodian's name and component; the
// component is not echoed when stdin is a terminal.
func (cr *componentReader) promptComponent(i int) (string, []byte, error) {
	fmt.Fprintf(cr.prompt, "custodian %d name: ", i)
	name, err := cr.line()
	if err != nil {
		return "", nil, err
	}
	if err := keyceremony.ValidCustodian(name); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(cr.prompt, "component %d, 64 hex digits (not echoed): ", i)
	var raw []byte
	if cr.inFile != nil {
		raw, err = term.ReadPassword(int(cr.inFile.Fd()))
		fmt.Fprintln(cr.prompt)
	} else {
		raw, err = cr.in.ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(raw) > 0 {
			err = nil
		}
	}
	defer clear(raw)
	if err != nil {
		return "", nil, fmt.Errorf("reading the component: %w", err)
	}
	value, err := keyceremony.ParseComponent(raw)
	return name, value, err
}

func (cr *componentReader) line() (string, error) {
	s, err := cr.in.ReadString('\n')
	if errors.Is(err, io.EOF) && s != "" {
		err = nil
	}
	if err != nil {
		return "", fmt.Errorf("reading input: %w", err)
	}
	return strings.TrimSpace(s), nil
}

// ceremonyImportComponents forms a purpose's next key version from
// custodian components and imports it as a sensitive key: it becomes the
// active version, as a rotation's would.
func ceremonyImportComponents(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("import-components")
	purposeName := fs.String("purpose", "", "the key to form: card-kek, pan-hmac, pek or audit")
	comps := addComponentFlags(fs)
	backup := fs.String("backup", "", backupUsage+" (default: the active version's, else vendor)")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	p, err := hsm.ParsePurpose(*purposeName)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	if p.Kind() == hsm.KindRSA {
		return fmt.Errorf("--purpose %s: an RSA key pair cannot be formed from components", p)
	}
	if err := comps.validate(); err != nil {
		return err
	}
	m, store, tok, now, err := cf.beginWithStore(ctx, "import-components-"+string(p), log, false)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	previous, err := m.ActiveVersion(ctx, p)
	if err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
		return err
	}
	next := previous + 1
	keyBackup, err := keyBackupFor(ctx, m, p, *backup)
	if err != nil {
		return fmt.Errorf("--backup: %w", err)
	}
	if err := m.SetKeyBackup(keyBackup); err != nil {
		return fmt.Errorf("--backup %s: %w", keyBackup, err)
	}

	key, custodians, err := newComponentReader(m, p.Kind(), stdin, stdout).combine(ctx, comps)
	if err != nil {
		return err
	}
	defer clear(key)
	want, err := m.ValueKCV(ctx, p.Kind(), key)
	if err != nil {
		return err
	}
	t := newTranscript(ctx, stdout, cf, "import-components", now, tok, store)
	t.printf("purpose:  %s (%s), %d components\n", p, p.Kind(), len(custodians))
	t.printf("backup:   %s\n\n", backupMeaning[keyBackup])
	for i, c := range custodians {
		t.printf("component %d: custodian %s, confirmed %s, KCV %s\n", i+1, c.Name, c.At.Format(time.RFC3339), c.KCV)
	}
	if err := m.ImportSecret(ctx, p, next, key); err != nil {
		return err
	}
	if err := keyceremony.VerifyKey(ctx, m, p, next); err != nil {
		return fmt.Errorf("%s: imported but failed its round trip: %w", hsm.Label(p, next), err)
	}
	got, err := m.KCV(ctx, p, next)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: the token reports KCV %s for a key whose value has KCV %s", hsm.Label(p, next), got, want)
	}
	if err := recordKey(ctx, m, store, hsm.Label(p, next), filepath.Base(*cf.transcript)); err != nil {
		return err
	}
	t.printf("\ncombined: %s  KCV %s  imported, verified, recorded, active\n", hsm.Label(p, next), got)
	t.printf("\nresult: %s active\n", hsm.Label(p, next))
	return t.save(ctx)
}
