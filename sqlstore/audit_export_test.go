package sqlstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/auditchain"
)

// exportOf fills a fresh SQLite store's trail and exports all of it.
func exportOf(t testing.TB) []byte {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillAudit(t, s, auditEntries)
	var buf bytes.Buffer
	if _, _, err := s.ExportAudit(context.Background(), time.Unix(0, 0), time.Now().Add(time.Minute), &buf, testAuditKey); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// verifies says whether an export verifies: no error and no break.
func verifies(data []byte) (bool, string) {
	rep, err := auditchain.Verify(context.Background(), bytes.NewReader(data), testAuditKey)
	if err != nil {
		return false, err.Error()
	}
	if len(rep.Breaks) > 0 {
		return false, rep.Breaks[0].String()
	}
	return true, ""
}

// exportLines splits an export into its lines, decoded.
func exportLines(t *testing.T, data []byte) []auditchain.Line {
	t.Helper()
	var out []auditchain.Line
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e auditchain.Line
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func joinLines(t *testing.T, lines []auditchain.Line) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// rehashFrom edits nothing but recomputes the hashes and links of chain
// from its entry at seq on, as a forger with the export would.
func rehashFrom(lines []auditchain.Line, chain string) {
	var prev []byte
	for i := range lines {
		l := &lines[i]
		if l.Type != "entry" || l.Chain != chain {
			continue
		}
		if prev != nil {
			l.PrevHash = hex.EncodeToString(prev)
		}
		p, _ := hex.DecodeString(l.PrevHash)
		r := auditchain.Row{ID: l.ID, At: l.AtMicros, Actor: l.Actor, Action: l.Action, CardID: l.CardID, OwnerID: l.OwnerID,
			Outcome: l.Outcome, RequestID: l.RequestID, Detail: l.Detail}
		prev = auditchain.EntryHash(chain, l.Seq, p, r)
		l.Hash = hex.EncodeToString(prev)
	}
}

// The review's four tampered exports (issue 27, finding 3), each of which
// `audit verify --file` said verifies on 8675783.
func TestTamperedExportsDoNotVerify(t *testing.T) {
	data := exportOf(t)
	if ok, why := verifies(data); !ok {
		t.Fatalf("the untouched export does not verify: %s", why)
	}
	lines := exportLines(t, data)
	// A chain with a checkpoint past its second entry.
	var chain string
	var cp auditchain.Line
	for _, l := range lines {
		if l.Type == "checkpoint" && l.Seq >= 2 {
			chain, cp = l.Chain, l
			break
		}
	}
	if chain == "" {
		t.Fatal("no checkpoint to tamper under")
	}
	edited := func() []auditchain.Line {
		out := []auditchain.Line{}
		for _, l := range lines {
			if l.Type == "checkpoint" && l.Chain == chain {
				continue // the chain's checkpoint lines go
			}
			if l.Type == "entry" && l.Chain == chain && l.Seq == 1 {
				l.Actor = "someone else"
			}
			out = append(out, l)
		}
		rehashFrom(out, chain)
		return out
	}
	// The deleted checkpoint put back under chain+NUL: the v1 message was
	// not length-prefixed, so its MAC still verified.
	renamed := func() []auditchain.Line {
		out := edited()
		h, _ := hex.DecodeString(cp.Hash)
		var seq [8]byte
		binary.BigEndian.PutUint64(seq[:], uint64(cp.Seq))
		shifted := append(append([]byte{}, seq[1:]...), h[0])
		fake := cp
		fake.Chain = chain + "\x00"
		fake.Seq = int64(binary.BigEndian.Uint64(shifted))
		fake.Hash = hex.EncodeToString(h[1:])
		return slices.Insert(out, len(out)-1, fake) // before the trailer
	}
	cut := func() []auditchain.Line {
		out := []auditchain.Line{}
		for _, l := range lines {
			if l.Type == "window" || (l.Type == "entry" && l.Chain == chain && l.Seq == 1) {
				continue
			}
			out = append(out, l)
		}
		return out
	}
	for name, tampered := range map[string][]byte{
		"an entry edited, its chain rehashed, its checkpoints deleted": joinLines(t, edited()),
		"the same, a checkpoint put back under chain+NUL":              joinLines(t, renamed()),
		"a chain's first entry and the window line cut":                joinLines(t, cut()),
		"an empty file": nil,
	} {
		ok, why := verifies(tampered)
		if ok {
			t.Errorf("%s: the export verifies", name)
		}
		t.Logf("%s: %s", name, why)
	}
}

// Exports of consecutive windows, appended, verify as one; with the
// middle window missing they do not.
func TestAppendedExportsVerify(t *testing.T) {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cuts []time.Time
	for range 2 {
		fillAudit(t, s, 40)
		time.Sleep(2 * time.Millisecond) // ids carry milliseconds
		cuts = append(cuts, time.Now())
		time.Sleep(2 * time.Millisecond)
	}
	fillAudit(t, s, 40)
	export := func(since, until time.Time) []byte {
		var buf bytes.Buffer
		if _, _, err := s.ExportAudit(context.Background(), since, until, &buf, testAuditKey); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b, c := export(time.Unix(0, 0), cuts[0]), export(cuts[0], cuts[1]), export(cuts[1], time.Now().Add(time.Minute))
	if ok, why := verifies(slices.Concat(a, b, c)); !ok {
		t.Fatalf("three consecutive exports appended: %s", why)
	}
	ok, why := verifies(slices.Concat(a, c))
	if ok {
		t.Fatal("two exports with the window between them missing verify")
	}
	t.Logf("the middle window missing: %s", why)
}

var updateExport = flag.Bool("update-export", false, "rewrite auditchain's "+exportFixture+", its fuzz target's untouched export")

// exportFixture is an export of a small trail under testAuditKey,
// committed so every fuzz worker of auditchain holds the same bytes.
const exportFixture = "../auditchain/testdata/export.jsonl"

// TestExportFixtureVerifies keeps the fixture an untouched export of the
// current format; -update-export writes a new one.
func TestExportFixtureVerifies(t *testing.T) {
	if *updateExport {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fillAudit(t, s, 6)
		var buf bytes.Buffer
		if _, _, err := s.ExportAudit(context.Background(), time.Unix(0, 0), time.Now().Add(time.Minute), &buf, testAuditKey); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exportFixture, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(exportFixture)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := verifies(data); !ok {
		t.Fatalf("%s does not verify: %s", exportFixture, why)
	}
}
