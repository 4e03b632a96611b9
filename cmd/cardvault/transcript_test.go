package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
)

// Two ceremonies of one kind in the same instant (a refused retire and the
// retry at once) get two transcripts, named in the order they ran.
func TestTranscriptNamesNeverCollide(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var names []string
	for range 3 {
		name := defaultTranscript(dir, "retire", now)
		if slices.Contains(names, name) {
			t.Fatalf("transcript name %s given twice", name)
		}
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if !slices.IsSorted(names) {
		t.Fatalf("names do not sort in the order the ceremonies ran: %q", names)
	}
	later := defaultTranscript(dir, "retire", now.Add(time.Millisecond))
	if later < names[len(names)-1] {
		t.Fatalf("a later ceremony's transcript %s sorts before %s", later, names[len(names)-1])
	}
}

// A ceremony that fails after its transcript began leaves the transcript,
// saying how it failed and that no database holds its entry; a failing
// dry run writes nothing at all.
func TestFailedCeremonyLeavesItsTranscript(t *testing.T) {
	dir := t.TempDir()
	for _, dry := range []bool{false, true} {
		path := filepath.Join(dir, fmt.Sprintf("dry-%v.txt", dry))
		cf := ceremonyFlags{Transcript: path, Operator: "ops"}
		ctx, run := withCeremonyRun(context.Background())
		tr := newTranscript(ctx, io.Discard, cf, "rotate", time.Now(), hsm.TokenInfo{Label: "t", Serial: "s"}, nil)
		tr.dryRun = dry
		failure := errors.New("the token said no")
		if err := run.conclude(ctx, failure); !errors.Is(err, failure) {
			t.Fatalf("dry=%v: conclude returned %v", dry, err)
		}
		body, err := os.ReadFile(path)
		switch {
		case dry && err == nil:
			t.Fatalf("a failing dry run wrote %s", path)
		case !dry && (err != nil || !strings.Contains(string(body), "result: FAILED: the token said no") || !strings.Contains(string(body), "in no audit chain")):
			t.Fatalf("the failed ceremony's transcript: %v\n%s", err, body)
		}
	}
}
