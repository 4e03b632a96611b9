package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

func ceremonyCmd(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	const names = "init, rotate, rewrap, retire, import-components, export, import, adopt, list"
	if len(args) == 0 {
		return errors.New("want a subcommand: " + names)
	}
	ctx, run := withCeremonyRun(ctx)
	err := runCeremony(ctx, args, stdout, log, names)
	return run.conclude(ctx, err)
}

func runCeremony(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger, names string) error {
	switch args[0] {
	case "init":
		return ceremonyInit(ctx, args[1:], stdout, log)
	case "rotate":
		return ceremonyRotate(ctx, args[1:], stdout, log)
	case "rewrap":
		return ceremonyRewrap(ctx, args[1:], stdout, log)
	case "retire":
		return ceremonyRetire(ctx, args[1:], stdout, log)
	case "import-components":
		return ceremonyImportComponents(ctx, args[1:], os.Stdin, stdout, log)
	case "export":
		return ceremonyExport(ctx, args[1:], os.Stdin, stdout, log)
	case "import":
		return ceremonyImport(ctx, args[1:], os.Stdin, stdout, log)
	case "adopt":
		return ceremonyAdopt(ctx, args[1:], stdout, log)
	case "list":
		return ceremonyList(ctx, args[1:], stdout, log)
	default:
		return fmt.Errorf("unknown ceremony %q (want %s)", args[0], names)
	}
}

func operatorName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// ceremonyFlags are the flags of every ceremony that writes a transcript.
type ceremonyFlags struct {
	transcript, operator *string
}

func newCeremonyFlags(name string) (*flag.FlagSet, ceremonyFlags) {
	fs := flag.NewFlagSet("ceremony "+name, flag.ContinueOnError)
	return fs, ceremonyFlags{
		transcript: fs.String("transcript", "", "transcript file (default $CARDVAULT_TRANSCRIPT_DIR or ./transcripts, timestamped)"),
		operator:   fs.String("operator", operatorName(), "operator name for the transcript"),
	}
}

func (cf ceremonyFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// begin is what every ceremony does before its first change: settle the
// transcript's path (refusing to overwrite one), open the token and read
// its identity. The module is unpinned: a ceremony that makes keys sees
// every label, so it never reuses one. The caller closes the module.
func (cf ceremonyFlags) begin(ctx context.Context, name string, log *slog.Logger) (*hsm.Module, hsm.TokenInfo, time.Time, error) {
	return cf.open(ctx, name, log, nil)
}

func (cf ceremonyFlags) open(ctx context.Context, name string, log *slog.Logger, catalog hsm.KeyRecords) (*hsm.Module, hsm.TokenInfo, time.Time, error) {
	now := time.Now()
	if *cf.transcript == "" {
		*cf.transcript = defaultTranscript(name, now)
	}
	if _, err := os.Stat(*cf.transcript); err == nil {
		return nil, hsm.TokenInfo{}, now, fmt.Errorf("transcript %s exists; refusing to overwrite", *cf.transcript)
	}
	m, _, err := openHSM(log, catalog)
	if err != nil {
		return nil, hsm.TokenInfo{}, now, err
	}
	tok, err := m.Token(ctx)
	if err != nil {
		m.Close()
		return nil, hsm.TokenInfo{}, now, err
	}
	return m, tok, now, nil
}

// beginWithStore is begin for ceremonies that also read or write the
// database; the store checkpoints its audit chains with the token's audit
// key. With pinned, the module uses only the keys the store's catalog
// records, as the server does: the ceremonies that use keys for data
// (rewrap, retire) must never move records onto a planted key. The caller
// closes the store, then the module.
func (cf ceremonyFlags) beginWithStore(ctx context.Context, name string, log *slog.Logger, pinned bool) (*hsm.Module, *sqlstore.Store, hsm.TokenInfo, time.Time, error) {
	store, err := openStore(ctx, getenv(envDB, defaultDB))
	if err != nil {
		return nil, nil, hsm.TokenInfo{}, time.Time{}, err
	}
	var catalog hsm.KeyRecords
	if pinned {
		catalog = store
	}
	m, tok, now, err := cf.open(ctx, name, log, catalog)
	if err != nil {
		store.Close()
		return nil, nil, tok, now, err
	}
	store.UseAuditKey(m, 0)
	return m, store, tok, now, nil
}

// recordKey records a key version the ceremony made or imported in the
// key catalog, from what the token shows of it: its check value, origin
// (CKA_LOCAL) and export policy. It refuses a key whose attributes the
// server would reject, naming why. The server uses no key without a
// record.
func recordKey(ctx context.Context, m *hsm.Module, catalog vault.KeyCatalog, label, ceremony string) error {
	tok, err := m.Token(ctx)
	if err != nil {
		return err
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		return err
	}
	var rec *vault.KeyRecord
	for _, k := range keys {
		if k.Label != label || k.Class == "public" {
			continue
		}
		origin := vault.KeyImported
		if k.Local {
			origin = vault.KeyGenerated
		}
		rec = &vault.KeyRecord{Token: tok.Serial, Label: k.Label, Purpose: string(k.Purpose), Version: k.Version, Check: k.Check,
			Digest: k.Digest, Origin: origin, Extractable: k.Extractable, Ceremony: ceremony, RecordedAt: time.Now().UTC()}
	}
	if rec == nil {
		return fmt.Errorf("%s: not in the token", label)
	}
	for _, k := range keys {
		if k.Label != label {
			continue
		}
		if why := hsm.Mismatch(k, *rec); why != "" {
			return fmt.Errorf("%s (%s): the token made it %s; the server would refuse it, so it is not recorded", label, k.Class, why)
		}
	}
	err = catalog.RecordKey(ctx, *rec)
	if vault.KindOf(err) != vault.KindConflict {
		return err
	}
	// Recorded before for this token: a ceremony run again. The same key
	// is fine; another is not.
	records, lerr := catalog.KeyRecords(ctx)
	if lerr != nil {
		return lerr
	}
	for _, r := range records {
		if r.Token == rec.Token && r.Label == label && r.Digest == rec.Digest {
			return nil
		}
	}
	return fmt.Errorf("%s: the catalog records another key under this label for this token: %w", label, err)
}

// ceremonyInit creates version 1 of every purpose that has no key yet. It
// never touches an existing key; a second run creates nothing and says so.
func ceremonyInit(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("init")
	dryRun := fs.Bool("dry-run", false, "validate the configuration and log in, but create nothing")
	backup := fs.String("backup", "vendor", backupUsage)
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	keyBackup, err := hsm.ParseKeyBackup(*backup)
	if err != nil {
		return fmt.Errorf("--backup: %w", err)
	}
	// A dry run opens no database: it writes nothing at all.
	var m *hsm.Module
	var tok hsm.TokenInfo
	var now time.Time
	var catalog vault.KeyCatalog
	var store *sqlstore.Store
	if *dryRun {
		m, tok, now, err = cf.begin(ctx, "init", log)
	} else {
		m, store, tok, now, err = cf.beginWithStore(ctx, "init", log, false)
		if err == nil {
			catalog = store
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		// The store first: closing it checkpoints its audit chain with
		// the module's audit key.
		if store != nil {
			store.Close()
		}
		m.Close()
	}()
	if err := m.SetKeyBackup(keyBackup); err != nil {
		return fmt.Errorf("--backup %s: %w", keyBackup, err)
	}
	existing, err := m.Keys(ctx)
	if err != nil {
		return err
	}
	has := map[hsm.Purpose]bool{}
	for _, k := range existing {
		has[k.Purpose] = true
	}
	recorded := map[string]bool{}
	if catalog != nil {
		records, err := catalog.KeyRecords(ctx)
		if err != nil {
			return err
		}
		for _, r := range records {
			if r.Token == tok.Serial {
				recorded[r.Label] = true
			}
		}
	}

	t := newTranscript(ctx, stdout, cf, "init", now, tok, store)
	if *dryRun {
		t.dryRun = true
		t.printf("mode:     dry run (nothing is written)\n")
	}
	t.printf("backup:   %s\n", backupMeaning[keyBackup])
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nLABEL\tVERSION\tTYPE\tCHECK\tRESULT\tTIME\n")
	created := 0
	for _, p := range hsm.Purposes {
		version, result := uint32(1), "exists, unchanged"
		switch {
		case has[p]:
			if version, err = m.ActiveVersion(ctx, p); err != nil {
				return err
			}
			if catalog != nil && !recorded[hsm.Label(p, version)] {
				// Made outside a ceremony, or before catalogs: the server
				// will not use it. Recording it is not init's to decide.
				result = "exists, NOT RECORDED: the server will not use it"
			}
		case *dryRun:
			result = "would create"
		default:
			if err := m.Generate(ctx, p, version); err != nil {
				return err
			}
			if err := keyceremony.VerifyKey(ctx, m, p, version); err != nil {
				return fmt.Errorf("%s: created but failed its round trip: %w", hsm.Label(p, version), err)
			}
			if err := recordKey(ctx, m, catalog, hsm.Label(p, version), filepath.Base(*cf.transcript)); err != nil {
				return err
			}
			result = "created, verified, recorded"
			created++
		}
		check := "-"
		if result != "would create" {
			if check, err = keyCheck(ctx, m, p, version); err != nil {
				return err
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", hsm.Label(p, version), version, p.Kind(), check, result, time.Now().UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t.printf("%s", table.String())
	switch {
	case *dryRun:
		t.printf("\nresult: dry run complete; %d key(s) would be created\n", countMissing(has))
		return nil // a dry run writes nothing, not even a transcript
	case created == 0:
		t.printf("\nresult: nothing to do; every key already exists\n")
	default:
		t.printf("\nresult: created %d key(s)\n", created)
	}
	return t.save(ctx)
}

func countMissing(has map[hsm.Purpose]bool) int {
	n := 0
	for _, p := range hsm.Purposes {
		if !has[p] {
			n++
		}
	}
	return n
}

// backupUsage explains the --backup choice.
const backupUsage = "how new keys can be backed up: vendor (never extractable; the HSM vendor's cloning or replication) or wrap (extractable only wrapped under a key the security officer trusts, by ceremony export)"

// backupMeaning is what each backup choice means, for transcripts.
var backupMeaning = map[hsm.KeyBackup]string{
	hsm.BackupByVendor: "vendor (keys are never extractable; back the token up with the HSM vendor's cloning or replication)",
	hsm.BackupByWrap:   "wrap (keys are extractable only wrapped under a key the security officer trusts; ceremony export)",
}

// keyBackupFor is the backup of a purpose's next version: the one named,
// or by default the active version's, so that a rotation keeps the choice
// its ceremony init made.
func keyBackupFor(ctx context.Context, m *hsm.Module, p hsm.Purpose, named string) (hsm.KeyBackup, error) {
	if named != "" {
		return hsm.ParseKeyBackup(named)
	}
	active, err := m.ActiveVersion(ctx, p)
	if err != nil {
		return hsm.BackupByVendor, nil // no version yet: the default
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if k.Purpose == p && k.Version == active && k.Class != "public" && k.Extractable {
			return hsm.BackupByWrap, nil
		}
	}
	return hsm.BackupByVendor, nil
}

// keyCheck is a key's check value: the KCV of a secret key, or the SHA-256
// fingerprint of the public half of a key pair.
func keyCheck(ctx context.Context, m *hsm.Module, p hsm.Purpose, version uint32) (string, error) {
	if p.Kind() == hsm.KindRSA {
		pub, err := m.PublicKey(ctx, version)
		if err != nil {
			return "", err
		}
		fp, err := hsm.PublicKeyFingerprint(pub)
		if err != nil {
			return "", err
		}
		return "sha256:" + fp, nil
	}
	kcv, err := m.KCV(ctx, p, version)
	if err != nil {
		return "", err
	}
	return "KCV " + kcv.String(), nil
}

// ceremonyAdopt records a key version that is in the token but was not
// made by a ceremony of this vault's (a key placed by a vendor tool, or
// one made before key catalogs), after printing what the token shows of
// it for the transcript. It refuses an object whose attributes the server
// would reject: adopting is a reviewed decision about a key's value, never
// a way around its attributes.
func ceremonyAdopt(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("adopt")
	label := fs.String("label", "", "the key version to record, purpose/vN")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	if *label == "" {
		return errors.New("--label is required")
	}
	m, store, tok, now, err := cf.beginWithStore(ctx, "adopt", log, false)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	keys, err := m.Keys(ctx)
	if err != nil {
		return err
	}
	t := newTranscript(ctx, stdout, cf, "adopt", now, tok, store)
	found := false
	for _, k := range keys {
		if k.Label != *label {
			continue
		}
		found = true
		t.printf("object:   %s %s %s, sensitive=%v modifiable=%v copyable=%v local=%v export=%s usages=%v check %s\n",
			k.Label, k.Kind, k.Class, k.Sensitive, k.Modifiable, k.Copyable, k.Local, keyceremony.ExportPolicy(k), k.Usages, k.Check)
	}
	if !found {
		return fmt.Errorf("no object labelled %s in the token", *label)
	}
	if err := recordKey(ctx, m, store, *label, filepath.Base(*cf.transcript)); err != nil {
		return err
	}
	records, err := store.KeyRecords(ctx)
	if err != nil {
		return err
	}
	for _, r := range records {
		if r.Label == *label && r.Token == tok.Serial {
			t.printf("\nresult: %s recorded, origin %s, check %s\n", r.Label, r.Origin, r.Check)
		}
	}
	return t.save(ctx)
}

// ceremonyList prints the catalog: every key, its version, type, usages,
// attributes, check value and whether the server uses it (the module is
// pinned to the database's key records, as the server's is).
func ceremonyList(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("ceremony list", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := openStore(ctx, getenv(envDB, defaultDB))
	if err != nil {
		return err
	}
	defer store.Close()
	m, _, err := openHSM(log, store)
	if err != nil {
		return err
	}
	defer m.Close()
	keys, err := m.Keys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "LABEL\tPURPOSE\tVERSION\tTYPE\tCLASS\tACTIVE\tSENSITIVE\tEXPORT\tUSAGES\tEND DATE\tCHECK\tSTATUS\n")
	for _, k := range keys {
		check := "-"
		if k.Class != "public" {
			check = k.Check
		}
		end := "-"
		if !k.EndDate.IsZero() {
			end = k.EndDate.Format(time.DateOnly)
		}
		status := "recorded"
		if k.Rejected != "" {
			status = "REJECTED: " + k.Rejected
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\t%v\t%s\t%v\t%s\t%s\t%s\n", k.Label, k.Purpose, k.Version, k.Kind, k.Class,
			k.Active, k.Sensitive, keyceremony.ExportPolicy(k), k.Usages, end, check, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The token's profile says which paths the keys above are used by
	// (KCV method, PIN decryption, backup wrap).
	tok, err := m.Token(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "\ntoken:   %s (serial %s)\nprofile: %s\n", tok.Label, tok.Serial, tok.Profile)
	return err
}
