package main

import (
	"context"
	"fmt"
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
type ceremonyRotateCmd struct {
	ceremonyFlags `embed:""`
	Purpose       string `required:"" placeholder:"PURPOSE" help:"the key to rotate: card-kek, pan-hmac, set-pin, pek or audit"`
	GraceDays     *int   `name:"grace-days" placeholder:"DAYS" help:"set-pin only: accept PINs encrypted to the previous version through this many days after today (UTC) (default 7)"`
	Backup        string `help:"${backup_usage} (default: the active version's)"`
}

func (c *ceremonyRotateCmd) Run(in *invocation) error { return flagForm(in, c) }

func (cf *ceremonyRotateCmd) run(in *invocation) error {
	ctx, stdout, log, backup := in.ctx, in.stdout, in.log, cf.Backup
	p, err := hsm.ParsePurpose(cf.Purpose)
	if err != nil {
		return fmt.Errorf("--purpose: %w", err)
	}
	if p.Imported() {
		return fmt.Errorf("--purpose %s: its keys come from the other side of the zone; form the next version with `ceremony import-components` or `ceremony import-tr31`", p)
	}
	graceDays, err := checkGraceDays(p, cf.GraceDays)
	if err != nil {
		return err
	}
	c, err := cf.begin(ctx, "rotate-"+string(p), log, withStore)
	if err != nil {
		return err
	}
	defer c.close()
	previous, keyBackup, err := c.prepareNext(ctx, p, backup)
	if err != nil {
		return err
	}
	if previous == 0 {
		return fmt.Errorf("no %s key to rotate; run ceremony init first", p)
	}
	t := c.start(ctx, stdout, "rotate")
	t.printf("purpose:  %s (%s)\n", p, p.Kind())
	t.printf("backup:   %s\n", backupMeaning[keyBackup])
	oldCheck, err := keyceremony.Check(ctx, c.m, p, previous)
	if err != nil {
		return err
	}
	t.printf("previous: %s  %s\n", hsm.Label(p, previous), oldCheck)
	newCheck, err := keyceremony.NewVersion(ctx, c.m, c.store, p, previous+1, c.recordedBy())
	if err != nil {
		return err
	}
	t.printf("created:  %s  %s  verified, recorded, active\n", hsm.Label(p, previous+1), newCheck)
	if err := c.endPrevious(ctx, t, p, previous, graceDays); err != nil {
		return err
	}
	t.printf("\nresult: %s active\n", hsm.Label(p, previous+1))
	return t.save(ctx)
}

// checkGraceDays refuses --grace-days given for a purpose other than
// set_pin, and a negative grace; it returns the grace, 7 days by default.
func checkGraceDays(p hsm.Purpose, days *int) (int, error) {
	switch {
	case days == nil:
		return 7, nil
	case p != hsm.SetPIN:
		return 0, fmt.Errorf("--grace-days applies to set-pin only; %s versions stay readable until retired", p)
	case *days < 0:
		return 0, fmt.Errorf("--grace-days %d: want 0 or more", *days)
	}
	return *days, nil
}

// endPrevious says what becomes of the previous version. Clients encrypt
// to set_pin's public half, so it is dated: PINs to it are accepted
// through the grace period's last day and refused after. Other versions
// stay readable until retired.
func (c *ceremony) endPrevious(ctx context.Context, t *transcript, p hsm.Purpose, previous uint32, graceDays int) error {
	if p != hsm.SetPIN {
		t.printf("previous: stays in the token for reading until retired\n")
		return nil
	}
	lastDay := c.now.UTC().AddDate(0, 0, graceDays)
	// The catalog's date is the one servers read; the token's mirrors it
	// for tools that read the token alone.
	if err := c.store.SetKeyEndDate(ctx, c.tok.Serial, hsm.Label(p, previous), lastDay); err != nil {
		return fmt.Errorf("%s is active, but recording the end of %s failed (PINs to it are refused until it is dated): %w",
			hsm.Label(p, previous+1), hsm.Label(p, previous), err)
	}
	if err := c.m.SetPublicEndDate(ctx, p, previous, lastDay); err != nil {
		return fmt.Errorf("%s is active, but dating %s failed (PINs to it are refused until it is dated): %w",
			hsm.Label(p, previous+1), hsm.Label(p, previous), err)
	}
	t.printf("grace:    PINs encrypted to %s are accepted through %s (UTC), then refused\n",
		hsm.Label(p, previous), lastDay.Format(time.DateOnly))
	return nil
}
