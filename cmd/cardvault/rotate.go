package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/keyceremony"
)

// ceremonyRotate creates the next version of one purpose's key, proves it
// with a round trip and makes it active: the highest version is the one new
// writes use, and running servers pick it up within CARDVAULT_KEY_REFRESH.
// Older versions stay in the token for reading.
//
// Clients encrypt to the set_pin key, so its rotation also dates the
// previous version's public half: PINs encrypted to it are accepted
// through that day (UTC), and refused after.
func ceremonyRotate(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs, cf := newCeremonyFlags("rotate")
	purposeName := fs.String("purpose", "", "the key to rotate: card-kek, pan-hmac, set-pin, pek or audit")
	graceDays := fs.Int("grace-days", 7, "set-pin only: accept PINs encrypted to the previous version through this many days after today (UTC)")
	backup := fs.String("backup", "", backupUsage+" (default: the active version's)")
	if err := cf.parse(fs, args); err != nil {
		return err
	}
	p, err := hsm.ParsePurpose(*purposeName)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	graceSet := false
	fs.Visit(func(f *flag.Flag) { graceSet = graceSet || f.Name == "grace-days" })
	switch {
	case graceSet && p != hsm.SetPIN:
		return fmt.Errorf("--grace-days applies to set-pin only; %s versions stay readable until retired", p)
	case *graceDays < 0:
		return fmt.Errorf("--grace-days %d: want 0 or more", *graceDays)
	}
	m, store, tok, now, err := cf.beginWithStore(ctx, "rotate-"+string(p), log, false)
	if err != nil {
		return err
	}
	defer m.Close()
	defer store.Close()
	previous, err := m.ActiveVersion(ctx, p)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return fmt.Errorf("no %s key to rotate; run ceremony init first", p)
	} else if err != nil {
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

	t := newTranscript(ctx, stdout, cf, "rotate", now, tok, store)
	t.printf("purpose:  %s (%s)\n", p, p.Kind())
	t.printf("backup:   %s\n", backupMeaning[keyBackup])
	oldCheck, err := keyCheck(ctx, m, p, previous)
	if err != nil {
		return err
	}
	t.printf("previous: %s  %s\n", hsm.Label(p, previous), oldCheck)
	if err := m.Generate(ctx, p, next); err != nil {
		return err
	}
	if err := keyceremony.VerifyKey(ctx, m, p, next); err != nil {
		return fmt.Errorf("%s: created but failed its round trip: %w", hsm.Label(p, next), err)
	}
	if err := recordKey(ctx, m, store, hsm.Label(p, next), filepath.Base(*cf.transcript)); err != nil {
		return err
	}
	newCheck, err := keyCheck(ctx, m, p, next)
	if err != nil {
		return err
	}
	t.printf("created:  %s  %s  verified, recorded, active\n", hsm.Label(p, next), newCheck)
	if p == hsm.SetPIN {
		lastDay := now.UTC().AddDate(0, 0, *graceDays)
		if err := m.SetPublicEndDate(ctx, p, previous, lastDay); err != nil {
			return fmt.Errorf("%s is active, but dating %s failed (PINs to it are refused until it is dated): %w",
				hsm.Label(p, next), hsm.Label(p, previous), err)
		}
		t.printf("grace:    PINs encrypted to %s are accepted through %s (UTC), then refused\n",
			hsm.Label(p, previous), lastDay.Format(time.DateOnly))
	} else {
		t.printf("previous: stays in the token for reading until retired\n")
	}
	t.printf("\nresult: %s active\n", hsm.Label(p, next))
	return t.save(ctx)
}
