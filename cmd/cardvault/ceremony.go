package main

import (
	"bytes"
	"context"
	"errors"
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

// ceremonyCmd is `cardvault ceremony`: each ceremony a command of its own.
type ceremonyCmd struct {
	Init             ceremonyInitCmd             `cmd:"" help:"create every missing key, version 1; writes a transcript"`
	Rotate           ceremonyRotateCmd           `cmd:"" help:"create the next version of one purpose's key and make it active"`
	Rewrap           ceremonyRewrapCmd           `cmd:"" help:"move every record to the active key versions (--dry-run counts them)"`
	Retire           ceremonyRetireCmd           `cmd:"" help:"destroy a key version no record uses"`
	ImportComponents ceremonyImportComponentsCmd `cmd:"" name:"import-components" help:"form a key's next version from custodian components"`
	ImportTR31       ceremonyImportTR31Cmd       `cmd:"" name:"import-tr31" help:"import a zone PIN key from a TR-31 key block, under a KBPK formed from components"`
	Export           ceremonyExportCmd           `cmd:"" help:"back up every key, wrapped under a key formed from components"`
	Import           ceremonyImportCmd           `cmd:"" help:"restore a backup into this token"`
	Adopt            ceremonyAdoptCmd            `cmd:"" help:"record a key another tool placed, after review"`
	List             ceremonyListCmd             `cmd:"" help:"print the key catalog, and what the server rejects"`
	Run              ceremonyRunCmd              `cmd:"" help:"run a ceremony from a reviewed plan, approved by a quorum of officers (docs/ceremonies.md)"`
	Replay           ceremonyReplayCmd           `cmd:"" help:"check offline that a transcript is what a plan, approved by its officers, produced"`
}

// concluded runs a ceremony so that one which fails after it began
// still saves its transcript and audits itself as failed.
func concluded(in *invocation, ceremony func(*invocation) error) error {
	ctx, run := withCeremonyRun(in.ctx)
	within := *in
	within.ctx = ctx
	return run.conclude(ctx, ceremony(&within))
}

func operatorName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

// ceremonyFlags are the settings of every ceremony that writes a
// transcript: where, by whom, and the token and database it works on.
type ceremonyFlags struct {
	Transcript        string `placeholder:"FILE" help:"transcript file (default: a timestamped file in the transcript directory)"`
	Operator          string `default:"${operator}" help:"operator name for the transcript"`
	transcriptSetting `embed:"" group:"ceremony"`
	vaultRecords      `embed:""`

	// plan is the reviewed plan the ceremony runs from, nil in the flag
	// form (development).
	plan *planRun
}

// storeUse is what a ceremony opens of the database.
type storeUse int

const (
	// noStore: a dry run, which writes nothing at all.
	noStore storeUse = iota
	// withStore: the ceremony records keys and audits itself; the module
	// sees every label, so a ceremony that makes keys never reuses one.
	withStore
	// pinnedStore: as withStore, with the module using only the keys the
	// catalog records, as the server does: the ceremonies that use keys
	// for data (rewrap, retire) must never move records onto a planted
	// key.
	pinnedStore
)

// ceremony is one run of a ceremony that writes a transcript: its flags,
// the token it opened, the store (nil when it opened none) and when it
// began.
type ceremony struct {
	ceremonyFlags
	m     *hsm.Module
	store *sqlstore.Store
	tok   hsm.TokenInfo
	now   time.Time
}

// begin is what every ceremony does before its first change: settle the
// transcript's path (refusing to overwrite one), open the database as
// told and the token, and read the token's identity. The store
// checkpoints its audit chains with the token's audit key. The caller
// calls close.
func (cf ceremonyFlags) begin(ctx context.Context, name string, log *slog.Logger, use storeUse) (*ceremony, error) {
	c := &ceremony{ceremonyFlags: cf, now: time.Now()}
	if c.Transcript == "" {
		c.Transcript = defaultTranscript(cf.TranscriptDir, name, c.now)
	}
	if _, err := os.Stat(c.Transcript); err == nil {
		return nil, fmt.Errorf("transcript %s exists; refusing to overwrite", c.Transcript)
	}
	var catalog hsm.KeyRecords
	if use != noStore {
		store, err := cf.databaseSettings.open(ctx)
		if err != nil {
			return nil, err
		}
		c.store = store
		if use == pinnedStore {
			catalog = store
		}
	}
	var err error
	if c.m, err = cf.tokenSettings.open(log, catalog); err != nil {
		c.close()
		return nil, err
	}
	if c.tok, err = c.m.Token(ctx); err != nil {
		c.close()
		return nil, err
	}
	if c.store != nil {
		c.store.UseAuditKey(c.m, 0)
	}
	if err := cf.plannedIfRostered(ctx, c); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// plannedIfRostered claims a planned ceremony's plan, and refuses the
// flag form on a vault that has an officer roster: from then on every
// ceremony that changes something runs from an approved plan.
func (cf ceremonyFlags) plannedIfRostered(ctx context.Context, c *ceremony) error {
	if cf.plan != nil {
		return cf.plan.claim(ctx, c)
	}
	if c.store == nil {
		return nil
	}
	roster, err := c.store.CurrentRoster(ctx)
	switch {
	case errors.Is(err, sqlstore.ErrNoRoster):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("this vault has an officer roster (version %d, quorum %d): its ceremonies run from approved plans (cardvault ceremony run PLAN --approval SIG…; docs/ceremonies.md), not from flags", roster.Version, roster.Quorum)
}

// close closes the store first (closing it checkpoints its audit chains
// with the module's audit key), then the module.
func (c *ceremony) close() {
	if c.store != nil {
		c.store.Close()
	}
	if c.m != nil {
		c.m.Close()
	}
}

// start begins the ceremony's transcript.
func (c *ceremony) start(ctx context.Context, stdout io.Writer, name string) *transcript {
	return newTranscript(ctx, stdout, c.ceremonyFlags, name, c.now, c.tok, c.store)
}

// recordedBy is the name key records give for the ceremony that made them:
// its transcript's file name.
func (c *ceremony) recordedBy() string { return filepath.Base(c.Transcript) }

// catalog is where the ceremony records keys: nil when it opened no store.
func (c *ceremony) catalog() vault.KeyCatalog {
	if c.store == nil {
		return nil
	}
	return c.store
}

// prepareNext reads a purpose's active version (0 when it has none) and
// settles the backup of the next one (the one named, else the active
// version's), making the module create keys so.
func (c *ceremony) prepareNext(ctx context.Context, p hsm.Purpose, named string) (uint32, hsm.KeyBackup, error) {
	previous, err := c.m.ActiveVersion(ctx, p)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		previous = 0
	} else if err != nil {
		return 0, 0, err
	}
	keyBackup, err := keyceremony.BackupFor(ctx, c.m, p, named)
	if err != nil {
		return 0, 0, fmt.Errorf("--backup: %w", err)
	}
	if err := c.m.SetKeyBackup(keyBackup); err != nil {
		return 0, 0, fmt.Errorf("--backup %s: %w", keyBackup, err)
	}
	return previous, keyBackup, nil
}

// ceremonyInit creates version 1 of every purpose that has no key yet. It
// never touches an existing key; a second run creates nothing and says so.
type ceremonyInitCmd struct {
	ceremonyFlags `embed:""`
	DryRun        bool   `help:"validate the configuration and log in, but create nothing"`
	Backup        string `default:"vendor" enum:"vendor,wrap,none" help:"${backup_usage}"`
}

func (c *ceremonyInitCmd) Run(in *invocation) error { return flagForm(in, c) }

func (ci *ceremonyInitCmd) run(in *invocation) error {
	ctx, stdout, log, dryRun := in.ctx, in.stdout, in.log, ci.DryRun
	keyBackup, err := hsm.ParseKeyBackup(ci.Backup)
	if err != nil {
		return fmt.Errorf("--backup: %w", err)
	}
	use := withStore
	if dryRun {
		use = noStore // a dry run opens no database: it writes nothing at all
	}
	c, err := ci.begin(ctx, "init", log, use)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.m.SetKeyBackup(keyBackup); err != nil {
		return fmt.Errorf("--backup %s: %w", keyBackup, err)
	}
	plan, err := c.planInit(ctx)
	if err != nil {
		return err
	}
	t := c.start(ctx, stdout, "init")
	if dryRun {
		t.dryRun = true
		t.printf("mode:     dry run (nothing is written)\n")
	}
	t.printf("backup:   %s\n", backupMeaning[keyBackup])
	created, err := c.initKeys(ctx, t, plan, dryRun)
	if err != nil {
		return err
	}
	if dryRun {
		t.printf("\nresult: dry run complete; %d key(s) would be created\n", plan.missing())
		return nil // a dry run writes nothing, not even a transcript
	}
	if created == 0 {
		t.printf("\nresult: nothing to do; every key already exists\n")
	} else {
		t.printf("\nresult: created %d key(s)\n", created)
	}
	return t.save(ctx)
}

// initPlan is what init found: the purposes the token has a key for, and
// the labels the catalog records for this token.
type initPlan struct {
	has      map[hsm.Purpose]bool
	recorded map[string]bool
}

func (c *ceremony) planInit(ctx context.Context) (initPlan, error) {
	plan := initPlan{has: map[hsm.Purpose]bool{}, recorded: map[string]bool{}}
	existing, err := c.m.Keys(ctx)
	if err != nil {
		return plan, err
	}
	for _, k := range existing {
		plan.has[k.Purpose] = true
	}
	if c.store == nil {
		return plan, nil
	}
	records, err := c.store.KeyRecords(ctx)
	if err != nil {
		return plan, err
	}
	for _, r := range records {
		if r.Token == c.tok.Serial {
			plan.recorded[r.Label] = true
		}
	}
	return plan, nil
}

func (p initPlan) missing() int {
	n := 0
	for _, purpose := range hsm.Purposes {
		if !p.has[purpose] {
			n++
		}
	}
	return n
}

// initKeys creates what the plan lacks (unless a dry run) and prints a
// line per purpose. It returns how many keys it created.
func (c *ceremony) initKeys(ctx context.Context, t *transcript, plan initPlan, dryRun bool) (int, error) {
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nLABEL\tVERSION\tTYPE\tCHECK\tRESULT\tTIME\n")
	created := 0
	for _, p := range hsm.Purposes {
		version, check, result, err := c.initKey(ctx, p, plan, dryRun)
		if err != nil {
			return created, err
		}
		if !plan.has[p] && !dryRun {
			created++
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", hsm.Label(p, version), version, p.Kind(), check, result, time.Now().UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return created, err
	}
	t.printf("%s", table.String())
	return created, nil
}

// initKey creates a purpose's version 1 if the token has none, or reports
// the active version it has.
func (c *ceremony) initKey(ctx context.Context, p hsm.Purpose, plan initPlan, dryRun bool) (uint32, string, string, error) {
	switch {
	case plan.has[p]:
		version, err := c.m.ActiveVersion(ctx, p)
		if err != nil {
			return 0, "", "", err
		}
		result := "exists, unchanged"
		if c.store != nil && !plan.recorded[hsm.Label(p, version)] {
			// Made outside a ceremony, or before catalogs: the server
			// will not use it. Recording it is not init's to decide.
			result = "exists, NOT RECORDED: the server will not use it"
		}
		check, err := keyceremony.Check(ctx, c.m, p, version)
		return version, check, result, err
	case dryRun:
		return 1, "-", "would create", nil
	default:
		check, err := keyceremony.NewVersion(ctx, c.m, c.catalog(), p, 1, c.recordedBy())
		return 1, check, "created, verified, recorded", err
	}
}

// backupUsage explains the --backup choice.
const backupUsage = "how new keys can be backed up: vendor (never extractable; the HSM vendor's cloning or replication) or wrap (extractable only wrapped under a key the security officer trusts, by ceremony export)"

// backupMeaning is what each backup choice means, for transcripts.
var backupMeaning = map[hsm.KeyBackup]string{
	hsm.BackupByVendor: "vendor (keys are never extractable; back the token up with the HSM vendor's cloning or replication)",
	hsm.BackupByWrap:   "wrap (keys are extractable only wrapped under a key the security officer trusts; ceremony export)",
}

// ceremonyAdopt records a key version that is in the token but was not
// made by a ceremony of this vault's (a key placed by a vendor tool, or
// one made before key catalogs), after printing what the token shows of
// it for the transcript. It refuses an object whose attributes the server
// would reject: adopting is a reviewed decision about a key's value, never
// a way around its attributes.
type ceremonyAdoptCmd struct {
	ceremonyFlags `embed:""`
	Label         string `required:"" placeholder:"PURPOSE/vN" help:"the key version to record"`
}

func (c *ceremonyAdoptCmd) Run(in *invocation) error { return flagForm(in, c) }

func (ca *ceremonyAdoptCmd) run(in *invocation) error {
	ctx, stdout, log, label := in.ctx, in.stdout, in.log, &ca.Label
	c, err := ca.begin(ctx, "adopt", log, withStore)
	if err != nil {
		return err
	}
	defer c.close()
	keys, err := c.m.Keys(ctx)
	if err != nil {
		return err
	}
	t := c.start(ctx, stdout, "adopt")
	if printObjects(t, keys, *label) == 0 {
		return fmt.Errorf("no object labelled %s in the token", *label)
	}
	if err := keyceremony.RecordKey(ctx, c.m, c.store, *label, c.recordedBy()); err != nil {
		return err
	}
	records, err := c.store.KeyRecords(ctx)
	if err != nil {
		return err
	}
	for _, r := range records {
		if r.Label == *label && r.Token == c.tok.Serial {
			t.printf("\nresult: %s recorded, origin %s, check %s\n", r.Label, r.Origin, r.Check)
		}
	}
	return t.save(ctx)
}

// printObjects prints what the token shows of a label's objects, for the
// transcript, and returns how many there are.
func printObjects(t *transcript, keys []hsm.KeyInfo, label string) int {
	n := 0
	for _, k := range keys {
		if k.Label != label {
			continue
		}
		n++
		t.printf("object:   %s %s %s, sensitive=%v modifiable=%v copyable=%v local=%v export=%s usages=%v check %s\n",
			k.Label, k.Kind, k.Class, k.Sensitive, k.Modifiable, k.Copyable, k.Local, keyceremony.ExportPolicy(k), k.Usages, k.Check)
	}
	return n
}

// ceremonyList prints the catalog: every key, its version, type, usages,
// attributes, check value and whether the server uses it (the module is
// pinned to the database's key records, as the server's is).
type ceremonyListCmd struct {
	vaultRecords `embed:""`
}

func (cl *ceremonyListCmd) Run(in *invocation) error {
	ctx, stdout := in.ctx, in.stdout
	store, err := cl.databaseSettings.open(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	m, err := cl.tokenSettings.open(in.log, store)
	if err != nil {
		return err
	}
	defer m.Close()
	keys, err := m.Keys(ctx)
	if err != nil {
		return err
	}
	if err := printKeyTable(stdout, keys); err != nil {
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

// printKeyTable prints the token's key objects as the catalog sees them.
func printKeyTable(stdout io.Writer, keys []hsm.KeyInfo) error {
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
	return tw.Flush()
}
