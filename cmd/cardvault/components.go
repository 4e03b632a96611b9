package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
)

// componentFlags are the flags of every ceremony that takes components.
type componentFlags struct {
	Components    int      `required:"" placeholder:"N" help:"how many custodian components form the key (2 to 9)"`
	ComponentFile []string `name:"component-file" sep:"none" placeholder:"FILE" help:"a custodian's component file (custodian:, component:, kcv: lines); repeat per custodian, or omit to be prompted"`
}

func (cf *componentFlags) validate() error {
	switch {
	case cf.Components < 2 || cf.Components > 9:
		return fmt.Errorf("--components %d: want 2 to 9", cf.Components)
	case len(cf.ComponentFile) != 0 && len(cf.ComponentFile) != cf.Components:
		return fmt.Errorf("--component-file given %d times for %d components: give one per custodian, or none to be prompted", len(cf.ComponentFile), cf.Components)
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
	cr.files = cf.ComponentFile
	return keyceremony.Combine(ctx, cr.m, cr.kind, cf.Components, cr, cr.prompt)
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
type ceremonyImportComponentsCmd struct {
	ceremonyFlags  `embed:""`
	Purpose        string `required:"" placeholder:"PURPOSE" help:"the key to form: card-kek, pan-hmac, pek, audit or zpk (a zone PIN key)"`
	componentFlags `embed:""`
	Backup         string `help:"${backup_usage} (default: the active version's, else vendor)"`
}

func (c *ceremonyImportComponentsCmd) Run(in *invocation) error { return flagForm(in, c) }

func (ic *ceremonyImportComponentsCmd) run(in *invocation) error {
	ctx, stdin, stdout, log, comps, backup := in.ctx, in.stdin, in.stdout, in.log, &ic.componentFlags, ic.Backup
	p, err := hsm.ParsePurpose(ic.Purpose)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	if p.Kind() == hsm.KindRSA {
		return fmt.Errorf("--purpose %s: an RSA key pair cannot be formed from components", p)
	}
	if err := comps.validate(); err != nil {
		return err
	}
	c, err := ic.begin(ctx, "import-components-"+string(p), log, withStore)
	if err != nil {
		return err
	}
	defer c.close()
	previous, keyBackup, err := c.prepareNext(ctx, p, backup)
	if err != nil {
		return err
	}
	key, custodians, err := newComponentReader(c.m, p.Kind(), stdin, stdout).combine(ctx, comps)
	if err != nil {
		return err
	}
	defer clear(key)
	t := c.start(ctx, stdout, "import-components")
	t.printf("purpose:  %s (%s), %d components\n", p, p.Kind(), len(custodians))
	t.printf("backup:   %s\n\n", backupMeaning[keyBackup])
	printCustodians(t, custodians)
	return c.concludeImport(ctx, t, "combined", p, previous+1, key)
}

// concludeImport imports a key as a purpose's version (importVersion),
// says so in the transcript, and saves it: how says where the key came
// from ("combined" from components, "imported" from a key block).
func (c *ceremony) concludeImport(ctx context.Context, t *transcript, how string, p hsm.Purpose, version uint32, key []byte) error {
	kcv, err := c.importVersion(ctx, p, version, key)
	if err != nil {
		return err
	}
	t.printf("\n%s: %s  KCV %s  imported, verified, recorded, active\n", how, hsm.Label(p, version), kcv)
	t.printf("\nresult: %s active\n", hsm.Label(p, version))
	return t.save(ctx)
}

// importVersion imports a combined key as a purpose's version, proves it,
// checks that the token's KCV is the value's, and records it.
func (c *ceremony) importVersion(ctx context.Context, p hsm.Purpose, version uint32, key []byte) (hsm.CheckValue, error) {
	label := hsm.Label(p, version)
	want, err := c.m.ValueKCV(ctx, p.Kind(), key)
	if err != nil {
		return want, err
	}
	if err := c.m.ImportSecret(ctx, p, version, key); err != nil {
		return want, err
	}
	if err := keyceremony.VerifyKey(ctx, c.m, p, version); err != nil {
		return want, fmt.Errorf("%s: imported but failed its round trip: %w", label, err)
	}
	got, err := c.m.KCV(ctx, p, version)
	if err != nil {
		return want, err
	}
	if got != want {
		return want, fmt.Errorf("%s: the token reports KCV %s for a key whose value has KCV %s", label, got, want)
	}
	return got, keyceremony.RecordKey(ctx, c.m, c.store, label, c.recordedBy())
}

// printCustodians prints who confirmed each component, and its KCV.
func printCustodians(t *transcript, custodians []keyceremony.Custodian) {
	for i, cu := range custodians {
		t.printf("component %d: custodian %s, confirmed %s, KCV %s\n", i+1, cu.Name, cu.At.Format(time.RFC3339), cu.KCV)
	}
}
