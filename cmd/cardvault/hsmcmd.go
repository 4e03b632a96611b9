package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
)

// hsmCmd handles `cardvault hsm probe`: how the configured token behaves
// where PKCS#11 tokens differ, found by trials on session objects.
func hsmCmd(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) != 1 || args[0] != "probe" {
		return errors.New("want: hsm probe")
	}
	m, _, err := openHSM(log, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	p, err := m.Profile(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "token:\t%s (%s, %s, serial %s)\n", p.Token.Label, p.Token.Model, p.Token.Manufacturer, p.Token.Serial)
	fmt.Fprintf(tw, "profile:\t%s\n", p.Name())
	fmt.Fprintf(tw, "GCM IV:\t%s\n", p.GCMIV)
	wrap := "enforced (keys leave only wrapped under a key the security officer trusts)"
	if !p.TrustedWrap {
		wrap = "ignored (keys are made never extractable; backups are the token's own)"
	}
	fmt.Fprintf(tw, "CKA_WRAP_WITH_TRUSTED:\t%s\n", wrap)
	fmt.Fprintf(tw, "CKA_COPYABLE on token keys:\t%s\n", p.Copyable)
	for _, mech := range p.Mechanisms {
		have := "listed"
		if !mech.Listed {
			have = "MISSING"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", mech.Name, have)
	}
	return tw.Flush()
}
