package sqlstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// An audit export is JSON lines: one line per entry, with its chain,
// position, previous hash, hash and every audited field exactly as stored
// (so its hash can be recomputed), and one line per checkpoint. A window
// is chosen by when entries were written, read from their ids (UUIDv7,
// made under the chain's lease, so a chain's ids rise with its seq): a
// window cuts each chain at one point, and an export taken from where the
// last one ended (--since its --until) continues every chain. Appending
// the two files gives one export that verifies as a whole.

// ExportLine is one line of an audit export.
type ExportLine struct {
	Type string `json:"type"` // "window", "entry" or "checkpoint"
	// Window: the export's first line, the instants it covers.
	Since string `json:"since,omitempty"`
	Until string `json:"until,omitempty"`
	Chain string `json:"chain,omitempty"`
	Seq   int64  `json:"seq,omitempty"`
	// Entries.
	PrevHash  string `json:"prev_hash,omitempty"` // hex
	Hash      string `json:"hash,omitempty"`      // hex; for a checkpoint, the hash it vouches for
	ID        string `json:"id,omitempty"`
	AtMicros  int64  `json:"at_us,omitempty"`
	At        string `json:"at,omitempty"` // the same instant, RFC 3339, for people
	Actor     string `json:"actor,omitempty"`
	Action    string `json:"action,omitempty"`
	CardID    string `json:"card_id,omitempty"`
	OwnerID   string `json:"owner_id,omitempty"`
	Outcome   string `json:"outcome,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Detail is the entry's detail as stored: a JSON object, kept as text
	// so the hash is over the same bytes.
	Detail string `json:"detail,omitempty"`
	// Checkpoints.
	KeyVersion uint32 `json:"key_version,omitempty"`
	MAC        string `json:"mac,omitempty"` // hex
}

// windowID is the smallest UUIDv7 written at or after t.
func windowID(t time.Time) string {
	var u uuid.UUID
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(u[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(u[2:6], uint32(ms))
	u[6] = 0x70
	return u.String()
}

// ExportAudit writes a window line naming [since, until), then every
// chained entry written in it, in chain and seq order, then the
// checkpoints stored in it, one ExportLine each. It returns the counts.
func (s *Store) ExportAudit(ctx context.Context, since, until time.Time, w io.Writer) (entries, checkpoints int, err error) {
	enc := json.NewEncoder(w)
	if err := enc.Encode(ExportLine{Type: "window", Since: since.UTC().Format(time.RFC3339Nano), Until: until.UTC().Format(time.RFC3339Nano)}); err != nil {
		return 0, 0, err
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, at, actor, action, card_id, owner_id, outcome, request_id, detail, chain, seq, prev_hash, hash
		FROM audit WHERE chain IS NOT NULL AND id >= ? AND id < ? ORDER BY chain, seq`), windowID(since), windowID(until))
	if err != nil {
		return 0, 0, s.fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r auditRow
		var l ExportLine
		var prev, hash []byte
		if err := rows.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.CardID, &r.OwnerID, &r.Outcome, &r.RequestID, &r.Detail,
			&l.Chain, &l.Seq, &prev, &hash); err != nil {
			return entries, 0, s.fail(err)
		}
		l.Type, l.ID, l.AtMicros, l.At = "entry", r.ID, r.At, fromMicros(r.At).Format(time.RFC3339Nano)
		l.Actor, l.Action, l.CardID, l.OwnerID, l.Outcome, l.RequestID, l.Detail = r.Actor, r.Action, r.CardID, r.OwnerID, r.Outcome, r.RequestID, r.Detail
		l.PrevHash, l.Hash = hex.EncodeToString(prev), hex.EncodeToString(hash)
		if err := enc.Encode(l); err != nil {
			return entries, 0, err
		}
		entries++
	}
	if err := rows.Err(); err != nil {
		return entries, 0, s.fail(err)
	}
	rows.Close()
	crows, err := s.db.QueryContext(ctx, s.q(`SELECT chain, seq, hash, key_version, mac, at FROM audit_checkpoints WHERE at >= ? AND at < ? ORDER BY chain, seq`),
		micros(since), micros(until))
	if err != nil {
		return entries, 0, s.fail(err)
	}
	defer crows.Close()
	for crows.Next() {
		var l ExportLine
		var hash, mac []byte
		var version int64
		if err := crows.Scan(&l.Chain, &l.Seq, &hash, &version, &mac, &l.AtMicros); err != nil {
			return entries, checkpoints, s.fail(err)
		}
		l.Type, l.Hash, l.MAC, l.KeyVersion = "checkpoint", hex.EncodeToString(hash), hex.EncodeToString(mac), uint32(version)
		l.At = fromMicros(l.AtMicros).Format(time.RFC3339Nano)
		if err := enc.Encode(l); err != nil {
			return entries, checkpoints, err
		}
		checkpoints++
	}
	return entries, checkpoints, s.fail(crows.Err())
}

// ExportReport is what VerifyExport found.
type ExportReport struct {
	Chains, Entries, Checkpoints int
	// Continued are the chains whose first entry in the file is not their
	// first: the link into it is an earlier export's to check.
	Continued map[string]int64
	// CheckpointsVerified is how many checkpoint MACs were checked with
	// the HSM; zero when no key was given.
	CheckpointsVerified int
	// CheckpointsOutside are checkpoints for entries not in the file; their
	// MACs are checked, their hashes cannot be.
	CheckpointsOutside int
	Breaks             []AuditBreak
}

// VerifyExport checks an export offline: every line's hash recomputed,
// every chain's links and seqs consecutive. With key, every checkpoint's
// MAC is checked too; key may be nil when the token is not reachable.
func VerifyExport(ctx context.Context, r io.Reader, key AuditKey) (*ExportReport, error) {
	f, err := readExport(r)
	if err != nil {
		return nil, err
	}
	rep := &ExportReport{Continued: map[string]int64{}}
	for chain, es := range f.chains {
		rep.verifyChain(chain, es, f.fromStart)
	}
	for _, c := range f.checkpoints {
		if err := rep.verifyCheckpoint(ctx, c, f.chains[c.Chain], key); err != nil {
			return nil, err
		}
	}
	sortBreaks(rep.Breaks)
	return rep, nil
}

// exportedEntry is an entry line with its hashes decoded.
type exportedEntry struct {
	line      ExportLine
	prev, sum []byte
}

// exportFile is an export as read: entries by chain in seq order, the
// checkpoints, and whether a window starts at the beginning, so that
// every chain in it must start at seq 1 (otherwise a chain may continue
// one in an earlier export).
type exportFile struct {
	chains      map[string][]exportedEntry
	checkpoints []ExportLine
	fromStart   bool
}

func readExport(r io.Reader) (*exportFile, error) {
	f := &exportFile{chains: map[string][]exportedEntry{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := f.add(sc.Bytes()); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, es := range f.chains {
		sort.Slice(es, func(i, j int) bool { return es[i].line.Seq < es[j].line.Seq })
	}
	return f, nil
}

// add reads one line of an export.
func (f *exportFile) add(text []byte) error {
	var l ExportLine
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return err
	}
	switch l.Type {
	case "entry":
		prev, err1 := hex.DecodeString(l.PrevHash)
		sum, err2 := hex.DecodeString(l.Hash)
		if err := errors.Join(err1, err2); err != nil || len(prev) != sha256.Size || len(sum) != sha256.Size {
			return fmt.Errorf("hashes must be %d bytes of hex", sha256.Size)
		}
		f.chains[l.Chain] = append(f.chains[l.Chain], exportedEntry{l, prev, sum})
	case "checkpoint":
		f.checkpoints = append(f.checkpoints, l)
	case "window":
		since, err := time.Parse(time.RFC3339Nano, l.Since)
		if err != nil {
			return fmt.Errorf("window since: %w", err)
		}
		f.fromStart = f.fromStart || !since.After(time.Unix(0, 0))
	default:
		return fmt.Errorf("type %q is not window, entry or checkpoint", l.Type)
	}
	return nil
}

// verifyChain recomputes a chain's hashes and links, in seq order.
func (rep *ExportReport) verifyChain(chain string, es []exportedEntry, fromStart bool) {
	rep.Chains++
	for i, e := range es {
		rep.Entries++
		broke := func(reason string) {
			rep.Breaks = append(rep.Breaks, AuditBreak{Chain: chain, Seq: e.line.Seq, ID: e.line.ID, Reason: reason})
		}
		row := auditRow{ID: e.line.ID, At: e.line.AtMicros, Actor: e.line.Actor, Action: e.line.Action, CardID: e.line.CardID,
			OwnerID: e.line.OwnerID, Outcome: e.line.Outcome, RequestID: e.line.RequestID, Detail: e.line.Detail}
		switch {
		case i == 0 && e.line.Seq == 1 && !bytes.Equal(e.prev, make([]byte, sha256.Size)):
			broke("the chain's first entry names a previous entry")
		case i == 0 && e.line.Seq > 1 && fromStart:
			broke(fmt.Sprintf("the chain starts at seq %d in an export from the beginning: entries 1 to %d were removed", e.line.Seq, e.line.Seq-1))
		case i == 0 && e.line.Seq > 1:
			rep.Continued[chain] = e.line.Seq
		case i > 0 && e.line.Seq == es[i-1].line.Seq:
			broke("two entries at one position")
		case i > 0 && e.line.Seq != es[i-1].line.Seq+1:
			broke(fmt.Sprintf("entry missing: the chain jumps from seq %d to seq %d", es[i-1].line.Seq, e.line.Seq))
		case i > 0 && !bytes.Equal(e.prev, es[i-1].sum):
			broke("previous-hash link does not match the entry before it")
		}
		if !bytes.Equal(entryHash(chain, e.line.Seq, e.prev, row), e.sum) {
			broke("entry does not match its hash: it was edited")
		}
	}
}

// verifyCheckpoint checks a checkpoint against its chain's entries in the
// export and, with the audit key, its MAC.
func (rep *ExportReport) verifyCheckpoint(ctx context.Context, c ExportLine, es []exportedEntry, key AuditKey) error {
	rep.Checkpoints++
	// A checkpoint is stored after the entry it vouches for is written, by
	// the same store and clock, so its entry is in this export or an
	// earlier one, never a later one: one past its chain's end here was
	// cut from the end.
	if len(es) > 0 && c.Seq > es[len(es)-1].line.Seq {
		rep.Breaks = append(rep.Breaks, AuditBreak{Chain: c.Chain, Seq: c.Seq,
			Reason: fmt.Sprintf("checkpoint vouches for seq %d but the chain ends at seq %d in this export: entries were removed", c.Seq, es[len(es)-1].line.Seq)})
	}
	sum, err := hex.DecodeString(c.Hash)
	mac, err2 := hex.DecodeString(c.MAC)
	if err := errors.Join(err, err2); err != nil {
		return fmt.Errorf("checkpoint %s/%d: %w", c.Chain, c.Seq, err)
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].line.Seq >= c.Seq })
	if i == len(es) || es[i].line.Seq != c.Seq {
		rep.CheckpointsOutside++
	} else if !bytes.Equal(es[i].sum, sum) {
		rep.Breaks = append(rep.Breaks, AuditBreak{Chain: c.Chain, Seq: c.Seq, Reason: "entry differs from the one its checkpoint vouches for"})
	}
	if key == nil {
		return nil
	}
	want, err := key.AuditMACWithVersion(ctx, c.KeyVersion, checkpointMessage(c.Chain, c.Seq, sum))
	if err != nil && vault.KindOf(err) != vault.KindCrypto && !errors.Is(err, vault.ErrNotFound) {
		return err
	}
	if err != nil || subtle.ConstantTimeCompare(want, mac) != 1 {
		rep.Breaks = append(rep.Breaks, AuditBreak{Chain: c.Chain, Seq: c.Seq, Reason: fmt.Sprintf("checkpoint MAC does not verify under audit key v%d", c.KeyVersion)})
		return nil
	}
	rep.CheckpointsVerified++
	return nil
}
