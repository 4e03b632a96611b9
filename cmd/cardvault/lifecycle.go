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
func ceremonyRewrap(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("rewrap")
	dryRun := fs.Bool("dry-run", false, "count records per key version; change nothing")
	batch := fs.Int("batch", 100, "records per transaction")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	if *batch < 1 || *batch > 10000 {
		return fmt.Errorf("--batch %d: want 1 to 10000", *batch)
	}
	// Only a binary built with -tags faultinject has a hook to give.
	killHook, err := rewrapKillHook()
	if err != nil {
		return err
	}
	if *dryRun {
		m, store, err := openPinned(ctx, log)
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
	m, store, tok, now, err := cf.beginWithStore(ctx, "rewrap", log, true)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	rw := vault.NewRewrapper(m, store)
	target, before, stale, err := rw.Plan(ctx)
	if err != nil {
		return err
	}
	t := newTranscript(ctx, stdout, cf, "rewrap", now, tok, store)
	t.printf("target:   card-kek/v%d pan-hmac/v%d pek/v%d\n\nbefore:\n", target.CardKEK, target.PANHMAC, target.PEK)
	if err := printKeyUse(t, target, before); err != nil {
		return err
	}
	t.printf("\nstale records: %d; batches of %d\n", stale, *batch)
	opts := vault.RewrapOptions{
		Batch:    *batch,
		Operator: *cf.operator,
		Progress: func(p vault.RewrapProgress) {
			fmt.Fprintf(stdout, "progress: %d/%d done, %d remaining, %d skipped, %.1f records/s, ETA %s\n",
				p.Done, p.Total, p.Remaining, p.Skipped, p.Rate(), p.ETA().Round(time.Millisecond))
		},
	}
	if killHook != nil {
		opts.AfterMove = killHook
	}
	p, runErr := rw.Run(ctx, opts)
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
func ceremonyRetire(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("retire")
	purposeName := fs.String("purpose", "", "the key: card-kek, pan-hmac, set-pin, pek or audit")
	versionFlag := fs.String("version", "", "the version to destroy")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	p, err := hsm.ParsePurpose(*purposeName)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	v64, err := strconv.ParseUint(*versionFlag, 10, 32)
	if err != nil || v64 == 0 {
		return fmt.Errorf("--version %q: want a version number, 1 or more", *versionFlag)
	}
	version := uint32(v64)
	m, store, tok, now, err := cf.beginWithStore(ctx, "retire-"+string(p), log, true)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()

	label := hsm.Label(p, version)
	active, err := m.ActiveVersion(ctx, p)
	if err != nil {
		return err
	}
	if version == active {
		return fmt.Errorf("refusing to retire %s: it is the active version; rotate first", label)
	}
	check, err := keyCheck(ctx, m, p, version)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return fmt.Errorf("%s is not in the token", label)
	} else if err != nil {
		return err
	}
	inUse, why, err := keyceremony.VersionInUse(ctx, m, store, p, version, time.Now())
	if err != nil {
		return err
	}
	t := newTranscript(ctx, stdout, cf, "retire", now, tok, store)
	t.printf("key:      %s  %s (active is v%d)\n", label, check, active)
	if inUse == 0 {
		wait := 2 * m.KeyRefresh()
		t.printf("in use:   none; waiting %s (two key refresh intervals) and counting again\n", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		if inUse, why, err = keyceremony.VersionInUse(ctx, m, store, p, version, time.Now()); err != nil {
			return err
		}
	}
	if inUse > 0 {
		t.printf("in use:   %d %s\n\nresult: refused; nothing destroyed\n", inUse, why)
		refusal := fmt.Errorf("refusing to retire %s: %d %s", label, inUse, why)
		if err := t.saveRefused(ctx, refusal); err != nil {
			return err
		}
		return refusal
	}
	n, err := m.DestroyVersion(ctx, p, version)
	if err != nil {
		return err
	}
	if err := store.AppendAudit(ctx, vault.AuditEntry{At: time.Now().UTC(), Actor: *cf.operator, Action: "key.retire", Outcome: "ok",
		Detail: map[string]string{"label": label, "check": check}}); err != nil {
		return err
	}
	t.printf("\nresult: %s retired; %d object(s) destroyed\n", label, n)
	return t.save(ctx)
}
