package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// errAuditBroken makes audit verify exit 1 once it has printed the
// breaks.
var errAuditBroken = errors.New("audit trail verification failed")

func auditCmd(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("want a subcommand: verify")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	m, store, err := openVault(ctx, log)
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
	if len(rep.Breaks) == 0 {
		fmt.Fprintln(stdout, "result: every chain and checkpoint verifies")
		return nil
	}
	for _, b := range rep.Breaks {
		fmt.Fprintf(stdout, "BROKEN: %s\n", b)
	}
	return fmt.Errorf("%w: %d chain(s) broken; first broken link: %s", errAuditBroken, len(rep.Breaks), rep.Breaks[0])
}
