package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/cardvault/cardvault/auditchain"
)

// errAuditBroken makes audit verify exit 1 once it has printed the
// breaks.
var errAuditBroken = errors.New("audit trail verification failed")

// auditCmd is `cardvault audit`.
type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"check the audit trail's hash chains and checkpoints; exit 1 at a broken link (--file F: an export's, offline)"`
	Export auditExportCmd `cmd:"" help:"write the trail, signed, for a SIEM or an assessor"`
}

// auditVerify checks the database's chains and checkpoints, or with
// --file an export's, offline and then with the token if it answers.
type auditVerifyCmd struct {
	vaultRecords `embed:""`
	File         string `placeholder:"FILE" help:"verify this export (cardvault audit export) instead of the database"`
}

func (a *auditVerifyCmd) Run(in *invocation) error {
	ctx, stdout, log := in.ctx, in.stdout, in.log
	if a.File != "" {
		return auditVerifyFile(ctx, a.tokenSettings, a.File, stdout, log)
	}
	m, store, err := a.openServing(ctx, log)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	rep, err := store.VerifyAudit(ctx, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "chains: %d, entries: %d, checkpoints: %d\n", rep.Chains, rep.Entries, rep.Checkpoints)
	fmt.Fprintf(stdout, "entries after their chain's last checkpoint: %d\n", rep.Unsealed)
	if rep.Unchained > 0 {
		fmt.Fprintf(stdout, "entries from before the chain existed (not verifiable): %d\n", rep.Unchained)
	}
	return reportBreaks(stdout, rep.Breaks, "every chain and checkpoint verifies")
}

func reportBreaks(stdout io.Writer, breaks []auditchain.Break, ok string) error {
	if len(breaks) == 0 {
		fmt.Fprintln(stdout, "result: "+ok)
		return nil
	}
	for _, b := range breaks {
		fmt.Fprintf(stdout, "BROKEN: %s\n", b)
	}
	return fmt.Errorf("%w: %d broken link(s); first broken link: %s", errAuditBroken, len(breaks), breaks[0])
}

// auditVerifyFile verifies an export with the token's audit key: every
// segment's trailer MAC over all of its lines, every hash, link and
// checkpoint. Without the token nothing is vouched for, so it fails.
func auditVerifyFile(ctx context.Context, token tokenSettings, path string, stdout io.Writer, log *slog.Logger) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := token.open(log, nil)
	if err != nil {
		return fmt.Errorf("%w: an export verifies only with the token's audit key, which is not reachable: %v", errAuditBroken, err)
	}
	defer m.Close()
	rep, err := auditchain.Verify(ctx, f, m)
	if err != nil {
		fmt.Fprintf(stdout, "file: %s\nBROKEN: %v\n", path, err)
		return fmt.Errorf("%w: %s: %v", errAuditBroken, path, err)
	}
	fmt.Fprintf(stdout, "file: %s\nsegments: %d, chains: %d, entries: %d, checkpoints: %d\n", path, rep.Segments, rep.Chains, rep.Entries, rep.Checkpoints)
	fmt.Fprintln(stdout, "trailers: every segment's MAC checked with the token's audit key (it covers every line, the window, each chain's ends and the counts)")
	fmt.Fprintln(stdout, "hash chains: every entry's hash recomputed, every link and seq checked")
	for chain, seq := range rep.Continued {
		fmt.Fprintf(stdout, "chain %s starts at seq %d: its link to seq %d is in an earlier export\n", chain, seq, seq-1)
	}
	fmt.Fprintf(stdout, "checkpoint MACs: %d verified with the token's audit key\n", rep.CheckpointsVerified)
	if rep.CheckpointsOutside > 0 {
		fmt.Fprintf(stdout, "checkpoints for entries outside this file: %d (their hashes are checked in the export that holds them)\n", rep.CheckpointsOutside)
	}
	return reportBreaks(stdout, rep.Breaks, "the export verifies")
}

// auditExport writes the trail as JSON lines, for a SIEM or an assessor.
type auditExportCmd struct {
	vaultRecords `embed:""`
	Since        string `placeholder:"TIME" help:"first instant to export, RFC 3339 (default: the beginning)"`
	Until        string `placeholder:"TIME" help:"instant to stop before, RFC 3339 (default: now); the next export's --since"`
	Out          string `placeholder:"FILE" help:"write to this file, which must not exist (default: standard output)"`
}

func (a *auditExportCmd) Run(in *invocation) error {
	ctx, stdout, log, since, until, out := in.ctx, in.stdout, in.log, &a.Since, &a.Until, &a.Out
	from, err := parseInstant("--since", *since, time.Unix(0, 0))
	if err != nil {
		return err
	}
	to, err := parseInstant("--until", *until, time.Now())
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return fmt.Errorf("--since %s is not before --until %s", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	w := stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	// The trailer is MACed in the token, so an export needs it as a
	// verification does.
	m, store, err := a.openServing(ctx, log)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	entries, checkpoints, err := store.ExportAudit(ctx, from, to, w, m)
	if err != nil {
		if *out != "" {
			os.Remove(*out) // a half-written export is no export
		}
		return err
	}
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	fmt.Fprintf(in.stderr, "exported %d entries and %d checkpoints written before %s; continue with --since %s\n",
		entries, checkpoints, to.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	return nil
}

func parseInstant(flag, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want an RFC 3339 time, e.g. 2026-12-01T10:00:00Z", flag)
	}
	return t, nil
}
