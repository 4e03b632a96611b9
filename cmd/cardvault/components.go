package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
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
)

// Split knowledge: a key is formed from N full-length components, one per
// custodian, combined by XOR. No custodian alone knows anything of the
// key. Each custodian confirms their component by its KCV, computed in
// the token, before anything is combined; a mismatch aborts with nothing
// written. Transcripts record custodians, times and KCVs, never values.

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
type custodianRecord struct {
	Name string
	At   time.Time
	KCV  string
}

// componentReader takes components from files or from a prompt.
type componentReader struct {
	m      *hsm.Module
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

// combine reads every component, confirms each one's KCV, and returns the
// XOR of them with the custodians' records. The caller clears the key.
func (cr *componentReader) combine(ctx context.Context, cf *componentFlags) ([]byte, []custodianRecord, error) {
	key := make([]byte, 32)
	var records []custodianRecord
	seen := map[string]int{}
	fail := func(err error) ([]byte, []custodianRecord, error) {
		clear(key)
		return nil, nil, fmt.Errorf("%w; aborted, nothing written", err)
	}
	for i := 1; i <= *cf.n; i++ {
		var name, confirmed string
		var value []byte
		var err error
		if len(cf.files) > 0 {
			name, value, confirmed, err = readComponentFile(cf.files[i-1])
		} else {
			name, value, err = cr.promptComponent(i)
		}
		if err != nil {
			return fail(fmt.Errorf("component %d: %w", i, err))
		}
		kcv, err := cr.m.ValueKCV(ctx, cr.kind, value)
		if err != nil {
			clear(value)
			return fail(fmt.Errorf("component %d: %w", i, err))
		}
		fmt.Fprintf(cr.prompt, "component %d (custodian %s): KCV %s\n", i, name, kcv)
		if len(cf.files) == 0 {
			fmt.Fprintf(cr.prompt, "custodian %s, type the %s KCV on your component form to confirm: ", name, kcv.Method)
			if confirmed, err = cr.line(); err != nil {
				clear(value)
				return fail(fmt.Errorf("component %d: %w", i, err))
			}
		}
		if err := confirmKCV(confirmed, kcv); err != nil {
			clear(value)
			return fail(fmt.Errorf("component %d (custodian %s): %w", i, name, err))
		}
		if j, dup := seen[kcv.Value]; dup {
			clear(value)
			return fail(fmt.Errorf("component %d (custodian %s) has the same KCV as component %d: identical components cancel out", i, name, j))
		}
		seen[kcv.Value] = i
		subtle.XORBytes(key, key, value)
		clear(value)
		records = append(records, custodianRecord{Name: name, At: time.Now().UTC(), KCV: kcv.String()})
	}
	return key, records, nil
}

// promptComponent asks for a custodian's name and component; the
// component is not echoed when stdin is a terminal.
func (cr *componentReader) promptComponent(i int) (string, []byte, error) {
	fmt.Fprintf(cr.prompt, "custodian %d name: ", i)
	name, err := cr.line()
	if err != nil {
		return "", nil, err
	}
	if err := validCustodian(name); err != nil {
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
	value, err := parseComponent(raw)
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

// readComponentFile reads a component form: "custodian: NAME",
// "component: HEX" and "kcv: HEX" lines, in any order.
func readComponentFile(path string) (name string, value []byte, kcv string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, "", err
	}
	defer clear(b)
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(bytes.TrimSpace(k)) {
		case "custodian":
			name = string(bytes.TrimSpace(v))
		case "component":
			clear(value)
			if value, err = parseComponent(v); err != nil {
				return "", nil, "", fmt.Errorf("%s: %w", path, err)
			}
		case "kcv":
			kcv = string(bytes.TrimSpace(v))
		}
	}
	switch {
	case value == nil:
		err = errors.New("no component: line")
	case kcv == "":
		err = errors.New("no kcv: line")
	default:
		err = validCustodian(name)
	}
	if err != nil {
		clear(value)
		return "", nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return name, value, kcv, nil
}

// confirmKCV holds a custodian's confirmation to the KCV the token made:
// the value, and the method if the form names one ("1A2B3C" or
// "1A2B3C (AES-ECB)"). A form made by another method is refused as such,
// since KCVs by different methods never match.
func confirmKCV(confirmed string, kcv hsm.CheckValue) error {
	value, method, _ := strings.Cut(strings.TrimSpace(confirmed), " ")
	method = strings.Trim(strings.TrimSpace(method), "()")
	if method != "" && !strings.EqualFold(method, kcv.Method) {
		return fmt.Errorf("the component form's KCV was made by %s and this token checks by %s; KCVs by different methods never match, so ask for a form with the %s KCV", method, kcv.Method, kcv.Method)
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToUpper(value)), []byte(kcv.Value)) != 1 {
		return fmt.Errorf("its KCV is %s, not the %q the custodian confirmed", kcv, strings.TrimSpace(confirmed))
	}
	return nil
}

func validCustodian(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\r\n\t") {
		return errors.New("custodian name must be 1 to 64 characters on one line")
	}
	return nil
}

// parseComponent decodes 64 hex digits, ignoring spaces (forms print
// components in groups). It never quotes the input in an error.
func parseComponent(raw []byte) ([]byte, error) {
	digits := make([]byte, 0, 64)
	defer clear(digits)
	for _, c := range raw {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case len(digits) < 64:
			digits = append(digits, c)
		default:
			return nil, errors.New("component must be 64 hex digits (32 bytes)")
		}
	}
	if len(digits) != 64 {
		return nil, errors.New("component must be 64 hex digits (32 bytes)")
	}
	value := make([]byte, 32)
	if _, err := hex.Decode(value, digits); err != nil {
		clear(value)
		return nil, errors.New("component is not hex")
	}
	return value, nil
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
	if err := verifyKey(ctx, m, p, next); err != nil {
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
