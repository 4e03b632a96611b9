package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
	"github.com/cardvault/cardvault/vault"
)

// ceremonyRewrap moves every open card's sealed record, PAN fingerprint
// and PIN block to the active key versions. --dry-run counts records per
// version and changes nothing.
type ceremonyRewrapCmd struct {
	ceremonyFlags `embed:""`
	DryRun        bool `help:"count records per key version; change nothing"`
	Batch         int  `default:"100" help:"records per transaction (1 to 10000)"`
}

func (c *ceremonyRewrapCmd) Run(in *invocation) error { return flagForm(in, c) }

func (cf *ceremonyRewrapCmd) run(in *invocation) error {
	ctx, stdout, log, batch := in.ctx, in.stdout, in.log, cf.Batch
	if batch < 1 || batch > 10000 {
		return fmt.Errorf("--batch %d: want 1 to 10000", batch)
	}
	if cf.DryRun {
		return rewrapDryRun(ctx, cf.vaultRecords, stdout, log)
	}
	opts, err := rewrapOptions(batch, cf.Operator, stdout)
	if err != nil {
		return err
	}
	c, err := cf.begin(ctx, "rewrap", log, pinnedStore)
	if err != nil {
		return err
	}
	defer c.close()
	rw := vault.NewRewrapper(c.m, c.store)
	target, before, stale, err := rw.Plan(ctx)
	if err != nil {
		return err
	}
	t := c.start(ctx, stdout, "rewrap")
	t.printf("target:   card-kek/v%d pan-hmac/v%d pek/v%d\n\nbefore:\n", target.CardKEK, target.PANHMAC, target.PEK)
	if err := printKeyUse(t, target, before); err != nil {
		return err
	}
	t.printf("\nstale records: %d; batches of %d\n", stale, batch)
	if err := c.untilServersSee(ctx, t, target); err != nil {
		return err
	}
	p, runErr := rw.Run(ctx, opts)
	if err := printRewrapOutcome(ctx, t, rw, target, p); err != nil {
		return err
	}
	if runErr != nil {
		t.printf("\nresult: %v\n", runErr)
		if err := t.saveRefused(ctx, runErr); err != nil {
			return err
		}
		return runErr
	}
	t.printf("\nresult: every open record is under the active versions\n")
	return t.save(ctx)
}

// untilServersSee waits until every server can have seen the target
// versions (keyceremony.SeenByServers): a server still on its view from
// before a rotation would otherwise seal new records under the old
// version after the rewrap had moved every record.
func (c *ceremony) untilServersSee(ctx context.Context, t *transcript, target vault.KeyVersions) error {
	records, err := c.store.KeyRecords(ctx)
	if err != nil {
		return err
	}
	labels := []string{hsm.Label(hsm.CardKEK, target.CardKEK), hsm.Label(hsm.PANHMAC, target.PANHMAC), hsm.Label(hsm.PEK, target.PEK)}
	refresh := c.m.KeyRefresh()
	seen := keyceremony.SeenByServers(records, c.tok.Serial, labels, refresh)
	wait := time.Until(seen)
	if wait <= 0 {
		return nil
	}
	t.printf("waiting:  until %s, two key refresh intervals (%s) after the target versions were recorded (latest %s)\n",
		seen.UTC().Format(time.RFC3339Nano), refresh, seen.Add(-2*refresh).UTC().Format(time.RFC3339Nano))
	select {
	case <-time.After(wait):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rewrapDryRun counts records per key version and changes nothing, not
// even a transcript.
func rewrapDryRun(ctx context.Context, records vaultRecords, stdout io.Writer, log *slog.Logger) error {
	m, store, err := records.openPinned(ctx, log)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	target, use, stale, err := vault.NewRewrapper(m, store).Plan(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rewrap dry run (nothing is written)\n\n")
	if err := printKeyUse(stdout, target, use); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nstale records: %d\n", stale)
	return nil
}

// rewrapOptions are the run's batch, operator and progress lines, with
// the crash hook a binary built with -tags faultinject may give.
func rewrapOptions(batch int, operator string, stdout io.Writer) (vault.RewrapOptions, error) {
	opts := vault.RewrapOptions{
		Batch:    batch,
		Operator: operator,
		Progress: func(p vault.RewrapProgress) {
			fmt.Fprintf(stdout, "progress: %d/%d done, %d remaining, %d skipped, %.1f records/s, ETA %s\n",
				p.Done, p.Total, p.Remaining, p.Skipped, p.Rate(), p.ETA().Round(time.Millisecond))
		},
	}
	killHook, err := rewrapKillHook()
	if killHook != nil {
		opts.AfterMove = killHook
	}
	return opts, err
}

// printRewrapOutcome counts the records again and prints what the run did.
func printRewrapOutcome(ctx context.Context, t *transcript, rw *vault.Rewrapper, target vault.KeyVersions, p vault.RewrapProgress) error {
	_, after, _, err := rw.Plan(ctx)
	if err != nil {
		return err
	}
	t.printf("\nafter:\n")
	if err := printKeyUse(t, target, after); err != nil {
		return err
	}
	t.printf("\nmoved %d, skipped %d (changed meanwhile), failed %d, in %s (%.1f records/s)\n",
		p.Done, p.Skipped, p.Failed, p.Elapsed.Round(time.Millisecond), p.Rate())
	return nil
}

// printKeyUse prints records per key version, marking the target.
func printKeyUse(out io.Writer, target vault.KeyVersions, use vault.KeyUse) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tVERSION\tRECORDS\tWHAT\n")
	for _, k := range []struct {
		p      hsm.Purpose
		active uint32
		counts map[uint32]int
		what   string
	}{
		{hsm.CardKEK, target.CardKEK, use.CardKEK, "sealed card records"},
		{hsm.PANHMAC, target.PANHMAC, use.PANHMAC, "PAN fingerprints"},
		{hsm.PEK, target.PEK, use.PEK, "PIN blocks"},
	} {
		versions := []uint32{k.active}
		for v := range k.counts {
			if v != k.active {
				versions = append(versions, v)
			}
		}
		sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
		for _, v := range versions {
			mark := ""
			if v == k.active {
				mark = " (active)"
			}
			fmt.Fprintf(tw, "%s\t%d%s\t%d\t%s\n", k.p, v, mark, k.counts[v], k.what)
		}
	}
	return tw.Flush()
}

// ceremonyRetire destroys a key version in the token once nothing needs
// it. Before destroying it waits two key refresh intervals and counts
// again, so that a server still on its previous view of the active version
// (which could have sealed under the retiring one) has been seen.
type ceremonyRetireCmd struct {
	ceremonyFlags `embed:""`
	Purpose       string `required:"" placeholder:"PURPOSE" help:"the key: card-kek, pan-hmac, set-pin, pek or audit"`
	Version       string `required:"" placeholder:"N" help:"the version to destroy"`
}

func (c *ceremonyRetireCmd) Run(in *invocation) error { return flagForm(in, c) }

func (cf *ceremonyRetireCmd) run(in *invocation) error {
	ctx, stdout, log := in.ctx, in.stdout, in.log
	p, err := hsm.ParsePurpose(cf.Purpose)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	v64, err := strconv.ParseUint(cf.Version, 10, 32)
	if err != nil || v64 == 0 {
		return fmt.Errorf("--version %q: want a version number, 1 or more", cf.Version)
	}
	version := uint32(v64)
	c, err := cf.begin(ctx, "retire-"+string(p), log, pinnedStore)
	if err != nil {
		return err
	}
	defer c.close()
	label := hsm.Label(p, version)
	active, check, err := c.retirable(ctx, p, version)
	if err != nil {
		return err
	}
	t := c.start(ctx, stdout, "retire")
	t.printf("key:      %s  %s (active is v%d)\n", label, check, active)
	inUse, why, err := c.inUseAfterWait(ctx, t, p, version)
	if err != nil {
		return err
	}
	if inUse > 0 {
		t.printf("in use:   %d %s\n\nresult: refused; nothing destroyed\n", inUse, why)
		refusal := fmt.Errorf("refusing to retire %s: %d %s", label, inUse, why)
		if err := t.saveRefused(ctx, refusal); err != nil {
			return err
		}
		return refusal
	}
	n, err := c.m.DestroyVersion(ctx, p, version)
	if err != nil {
		return err
	}
	if err := c.store.AppendAudit(ctx, vault.AuditEntry{At: time.Now().UTC(), Actor: cf.Operator, Action: "key.retire", Outcome: "ok",
		Detail: map[string]string{"label": label, "check": check}}); err != nil {
		return err
	}
	t.printf("\nresult: %s retired; %d object(s) destroyed\n", label, n)
	return t.save(ctx)
}

// retirable refuses the active version and one the token lacks; it
// returns the active version and the retiring one's check value.
func (c *ceremony) retirable(ctx context.Context, p hsm.Purpose, version uint32) (uint32, string, error) {
	label := hsm.Label(p, version)
	active, err := c.m.ActiveVersion(ctx, p)
	if err != nil {
		return 0, "", err
	}
	if version == active {
		return 0, "", fmt.Errorf("refusing to retire %s: it is the active version; rotate first", label)
	}
	check, err := keyceremony.Check(ctx, c.m, p, version)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return 0, "", fmt.Errorf("%s is not in the token", label)
	}
	return active, check, err
}

// inUseAfterWait counts what still needs the version. When nothing does,
// it waits two key refresh intervals and counts again, so that a server
// still on its previous view of the active version (which could have
// sealed under the retiring one) has been seen.
func (c *ceremony) inUseAfterWait(ctx context.Context, t *transcript, p hsm.Purpose, version uint32) (int, string, error) {
	inUse, why, err := keyceremony.VersionInUse(ctx, c.m, c.store, p, version, time.Now())
	if err != nil || inUse > 0 {
		return inUse, why, err
	}
	wait := 2 * c.m.KeyRefresh()
	t.printf("in use:   none; waiting %s (two key refresh intervals) and counting again\n", wait)
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return 0, "", ctx.Err()
	}
	return keyceremony.VersionInUse(ctx, c.m, c.store, p, version, time.Now())
}
