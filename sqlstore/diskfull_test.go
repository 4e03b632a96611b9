package sqlstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/cardvault/cardvault/vault"
)

// TestSQLiteDiskFull is scenario 5 of issue 28: the database's file
// system fills up under writes. A write that does not fit answers
// unavailable (HTTP 503), never an internal error; nothing acknowledged is
// lost, nothing is half-written (the file checks, the audit chain is
// whole), and writes work again once there is room, without a restart.
func TestSQLiteDiskFull(t *testing.T) {
	dir := t.TempDir()
	// A small tmpfs of its own: root, as CI and scripts/test.sh run.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Require(t, "mounting a 1 MiB tmpfs (needs root)", fmt.Errorf("%w: %s", err, out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	ctx := context.Background()
	path := filepath.Join(dir, "vault.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	write := func(i int) (string, error) {
		c := newTestCard()
		c.Sealed = make([]byte, 4096) // fills the disk in a few hundred writes
		rand.Read(c.Sealed)
		return c.ID, s.CreateCard(ctx, c, vault.Write{Audit: vault.AuditEntry{At: time.Now(), Actor: "a", Action: "card.import", CardID: c.ID, Outcome: "ok"}})
	}
	var acknowledged []string
	var full error
	for i := range 10000 {
		id, err := write(i)
		if err != nil {
			full = err
			break
		}
		acknowledged = append(acknowledged, id)
	}
	if full == nil {
		t.Fatal("10,000 writes fitted on a 1 MiB file system")
	}
	if vault.KindOf(full) != vault.KindUnavailable {
		t.Fatalf("a write that does not fit: %v (kind %v), want unavailable", full, vault.KindOf(full))
	}
	t.Logf("full after %d acknowledged writes: %v", len(acknowledged), errors.Unwrap(full))
	// Still full: a second write fails alike, and reads still work.
	if _, err := write(-1); vault.KindOf(err) != vault.KindUnavailable {
		t.Fatalf("second write on a full disk: %v", err)
	}
	if _, err := s.CardByID(ctx, acknowledged[0]); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	id, err := write(-2)
	if err != nil {
		t.Fatalf("write once there is room again: %v", err)
	}
	acknowledged = append(acknowledged, id)
	checkWhole := func(s *Store) {
		t.Helper()
		for _, id := range acknowledged {
			if _, err := s.CardByID(ctx, id); err != nil {
				t.Fatalf("acknowledged card %s: %v", id, err)
			}
		}
		var integrity string
		if err := s.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
			t.Fatalf("integrity_check = %q, %v", integrity, err)
		}
		rep, err := s.VerifyAudit(ctx, nil)
		if err != nil || len(rep.Breaks) != 0 {
			t.Fatalf("audit chain after a full disk: %+v, %v", rep, err)
		}
		if rep.Entries != len(acknowledged) {
			t.Fatalf("%d audit entries for %d acknowledged writes", rep.Entries, len(acknowledged))
		}
	}
	checkWhole(s)
	s.Close()
	if s, err = OpenSQLite(ctx, path); err != nil {
		t.Fatal(err)
	}
	checkWhole(s)
}
