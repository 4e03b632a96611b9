package main

import (
	"os"
	"slices"
	"testing"
	"time"
)

// Two ceremonies of one kind in the same instant (a refused retire and the
// retry at once) get two transcripts, named in the order they ran.
func TestTranscriptNamesNeverCollide(t *testing.T) {
	t.Setenv(envTranscripts, t.TempDir())
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var names []string
	for range 3 {
		name := defaultTranscript("retire", now)
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
	later := defaultTranscript("retire", now.Add(time.Millisecond))
	if later < names[len(names)-1] {
		t.Fatalf("a later ceremony's transcript %s sorts before %s", later, names[len(names)-1])
	}
}
