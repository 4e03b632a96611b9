package auditchain

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
	"hash"
	"io"
	"regexp"
	"slices"
	"sort"
	"time"
)

// An audit export is JSON lines in segments. A segment is a window line
// naming the instants it covers; every chained entry written in the
// window, with its chain, position, previous hash, hash and every audited
// field exactly as stored (so its hash can be recomputed), in chain and
// seq order; the stored checkpoints of the window; and a trailer MACed in
// the token under the audit key. The trailer names the window, each
// chain's first and last entry (seq and hash) and the counts, and carries
// the SHA-256 of every byte of the segment before it, so every line is
// covered by a MAC made in the token: nothing can be edited, added, cut
// or reordered without the key. The exporter verifies each chain's links
// and every checkpoint in the window against the database before it MACs
// the trailer, so it never vouches for a trail that is already broken.
//
// A window is chosen by when entries were written, read from their ids
// (UUIDv7, made under the chain's lease, so a chain's ids rise with its
// seq): a window cuts each chain at one point, and an export taken from
// where the last one ended (--since its --until) continues every chain.
// Appending the two files gives one export of two segments that verifies
// as a whole.

// Format is the segment format ExportAudit writes and Verify
// reads; it refuses any other.
const Format = 2

// Line is one line of an audit export.
type Line struct {
	Type string `json:"type"` // "window", "entry", "checkpoint" or "trailer"
	// Format is the window's segment format, or the message format a
	// checkpoint's MAC was made in.
	Format int64 `json:"format,omitempty"`
	// Window and trailer: the instants the segment covers.
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
	// Checkpoints and the trailer.
	KeyVersion uint32 `json:"key_version,omitempty"`
	MAC        string `json:"mac,omitempty"` // hex
	// The trailer.
	Spans       []ChainSpan `json:"chains,omitempty"`
	Entries     int         `json:"entries,omitempty"`
	Checkpoints int         `json:"checkpoints,omitempty"`
	Digest      string      `json:"digest,omitempty"` // hex SHA-256 of the segment's bytes before the trailer
}

// ChainSpan is what a segment holds of one chain.
type ChainSpan struct {
	Chain     string `json:"chain"`
	FirstSeq  int64  `json:"first_seq"`
	FirstPrev string `json:"first_prev"` // hex
	LastSeq   int64  `json:"last_seq"`
	LastHash  string `json:"last_hash"` // hex
	Entries   int    `json:"entries"`
}

// Writer writes a segment's lines and hashes every byte of them.
type Writer struct {
	enc *json.Encoder
	sum hash.Hash
}

// NewWriter starts a segment on w with its window line.
func NewWriter(w io.Writer, since, until time.Time) (*Writer, error) {
	sum := sha256.New()
	out := &Writer{enc: json.NewEncoder(io.MultiWriter(w, sum)), sum: sum}
	return out, out.Write(Line{Type: "window", Format: Format, Since: stamp(since), Until: stamp(until)})
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Write writes an entry or checkpoint line.
func (w *Writer) Write(l Line) error { return w.enc.Encode(l) }

// Finish ends the segment with its trailer: the window, the spans of
// chains, the counts in rep and the digest of every line written, MACed
// under key's active version.
func (w *Writer) Finish(ctx context.Context, since, until time.Time, chains map[string][]Entry, rep *Report, key Key) error {
	t := Line{Type: "trailer", Since: stamp(since), Until: stamp(until), Spans: Spans(chains),
		Entries: rep.Entries, Checkpoints: rep.Checkpoints, Digest: hex.EncodeToString(w.sum.Sum(nil))}
	msg, err := trailerMessage(t)
	if err != nil {
		return err
	}
	mac, version, err := key.AuditMAC(ctx, msg)
	if err != nil {
		return fmt.Errorf("MAC the export's trailer: %w", err)
	}
	t.MAC, t.KeyVersion = hex.EncodeToString(mac), version
	return w.enc.Encode(t)
}

// NewReport is an empty report, for an exporter's checks.
func NewReport() *Report { return &Report{Continued: map[string]int64{}} }

// Spans summarises each chain of a segment, in chain order.
func Spans(chains map[string][]Entry) []ChainSpan {
	out := make([]ChainSpan, 0, len(chains))
	for chain, es := range chains {
		first, last := es[0], es[len(es)-1]
		out = append(out, ChainSpan{Chain: chain, FirstSeq: first.Line.Seq, FirstPrev: hex.EncodeToString(first.Prev),
			LastSeq: last.Line.Seq, LastHash: hex.EncodeToString(last.Sum), Entries: len(es)})
	}
	slices.SortFunc(out, func(a, b ChainSpan) int { return cmpString(a.Chain, b.Chain) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// trailerMessage is what a trailer's MAC covers: its window, digest,
// counts and every chain span, each field length-prefixed.
func trailerMessage(t Line) ([]byte, error) {
	digest, err := hex.DecodeString(t.Digest)
	if err != nil || len(digest) != sha256.Size {
		return nil, errors.New("trailer digest must be 32 bytes of hex")
	}
	u64 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	fields := [][]byte{[]byte(t.Since), []byte(t.Until), digest, u64(int64(t.Entries)), u64(int64(t.Checkpoints)), u64(int64(len(t.Spans)))}
	for _, c := range t.Spans {
		prev, err1 := hex.DecodeString(c.FirstPrev)
		last, err2 := hex.DecodeString(c.LastHash)
		if errors.Join(err1, err2) != nil || len(prev) != sha256.Size || len(last) != sha256.Size {
			return nil, fmt.Errorf("trailer chain %q: hashes must be 32 bytes of hex", c.Chain)
		}
		fields = append(fields, []byte(c.Chain), u64(c.FirstSeq), prev, u64(c.LastSeq), last, u64(int64(c.Entries)))
	}
	return MACMessage("cardvault-audit-export-v2", fields...), nil
}

// Report is what Verify found.
type Report struct {
	Segments, Chains, Entries, Checkpoints int
	// Continued are the chains whose first entry in the file is not their
	// first: the link into it is an earlier export's to check.
	Continued map[string]int64
	// CheckpointsVerified is how many checkpoint MACs verified.
	CheckpointsVerified int
	// CheckpointsOutside are checkpoints for entries not in the file; their
	// MACs are checked, their hashes cannot be.
	CheckpointsOutside int
	Breaks             []Break
}

// Verify checks an export with the token's audit key: each
// segment's trailer MAC over its bytes, window and chain spans; every
// entry's hash, link and seq; every checkpoint's MAC and the entry it
// vouches for; and that segments follow each other without a gap. It
// fails closed: a line that is malformed, missing, extra, cut or out of
// place is an error or a break, and so is a file without a segment.
func Verify(ctx context.Context, r io.Reader, key Key) (*Report, error) {
	if key == nil {
		return nil, errors.New("an export verifies only with the token's audit key")
	}
	segs, err := readExport(r)
	if err != nil {
		return nil, err
	}
	rep := NewReport()
	rep.Segments = len(segs)
	chains := map[string][]Entry{}
	for i, seg := range segs {
		if i > 0 && seg.window.Since != segs[i-1].window.Until {
			rep.Breaks = append(rep.Breaks, Break{Reason: fmt.Sprintf("segment %d starts at %s but the one before it ends at %s: a window is missing", i+1, seg.window.Since, segs[i-1].window.Until)})
		}
		if err := rep.verifySegment(ctx, i+1, seg, key); err != nil {
			return nil, err
		}
		for chain, es := range seg.chains {
			chains[chain] = append(chains[chain], es...)
		}
	}
	fromStart := segs[0].since.Compare(time.Unix(0, 0)) <= 0
	for chain, es := range chains {
		rep.Chains++
		rep.Entries += len(es)
		rep.CheckLinks(chain, es, fromStart)
		for _, e := range es {
			rep.CheckHash(e)
		}
	}
	for _, seg := range segs {
		for _, c := range seg.checkpoints {
			if err := rep.CheckCheckpoint(ctx, c.line, c.sum, c.mac, chains[c.line.Chain], key); err != nil {
				return nil, err
			}
		}
	}
	SortBreaks(rep.Breaks)
	return rep, nil
}

// Entry is an entry line with its hashes decoded.
type Entry struct {
	Line      Line
	Prev, Sum []byte
}

// checkpointLine is a checkpoint line with its hash and MAC decoded.
type checkpointLine struct {
	line     Line
	sum, mac []byte
}

// segment is one export's lines as read: its window, entries by chain in
// seq order, checkpoints, trailer, and the digest of its bytes before the
// trailer.
type segment struct {
	window      Line
	since       time.Time
	chains      map[string][]Entry
	checkpoints []checkpointLine
	trailer     Line
	digest      []byte
	entries     int
}

// chainName is the shape of the chains a store makes: its writer's
// random id and the chain's index.
var chainName = regexp.MustCompile(`^[0-9a-f]{16}-[0-9]{1,4}$`)

// maxExportLine bounds one line; entries are a few hundred bytes and the
// trailer about 250 bytes a chain.
const maxExportLine = 4 << 20

// readExport splits a file into segments, strictly: a window line opens
// each, a trailer closes it, entries come before checkpoints, and every
// line is one JSON object of its type's fields.
func readExport(r io.Reader) ([]*segment, error) {
	var segs []*segment
	var cur *segment
	digest := sha256.New()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	sc.Split(linesWithNewline)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Bytes()
		if text[len(text)-1] != '\n' {
			return nil, fmt.Errorf("line %d: cut short (no newline at its end)", n)
		}
		l, err := decodeLine(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		switch {
		case cur == nil && l.Type != "window":
			return nil, fmt.Errorf("line %d: a segment must open with its window line, not %q", n, l.Type)
		case cur == nil:
			since, err := time.Parse(time.RFC3339Nano, l.Since)
			if err != nil || l.Format != Format {
				return nil, fmt.Errorf("line %d: window: want format %d and an RFC 3339 since", n, Format)
			}
			cur = &segment{window: l, since: since, chains: map[string][]Entry{}}
			digest.Reset()
		case l.Type == "window":
			return nil, fmt.Errorf("line %d: a window line inside a segment (its trailer is missing)", n)
		case l.Type == "trailer":
			cur.trailer, cur.digest = l, digest.Sum(nil)
			segs = append(segs, cur)
			cur = nil
			continue
		default:
			if err := cur.add(l); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		digest.Write(text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if cur != nil {
		return nil, errors.New("the last segment has no trailer: the export was cut or never finished")
	}
	if len(segs) == 0 {
		return nil, errors.New("the file holds no export")
	}
	return segs, nil
}

// linesWithNewline splits lines and keeps each one's newline, since the
// trailer's digest is over the bytes as written; a last line without one
// is returned as it is, for the reader to refuse.
func linesWithNewline(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// decodeLine reads one line: one JSON object, exactly as the exporter
// encodes it. encoding/json matches names without regard to case, so
// "lAst_hash" would read as last_hash (FuzzVerifyExport found it); a line
// must be its own canonical encoding, byte for byte.
func decodeLine(text []byte) (Line, error) {
	var l Line
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, err
	}
	canon, err := json.Marshal(l)
	if err != nil {
		return l, err
	}
	if !bytes.Equal(append(canon, '\n'), text) {
		return l, errors.New("not in the export's canonical form")
	}
	return l, nil
}

// add takes an entry or checkpoint line into the segment.
func (g *segment) add(l Line) error {
	if !chainName.MatchString(l.Chain) || l.Seq < 1 {
		return fmt.Errorf("%s: chain %q seq %d is not a chain position", l.Type, l.Chain, l.Seq)
	}
	switch l.Type {
	case "entry":
		if len(g.checkpoints) > 0 {
			return errors.New("an entry after the segment's checkpoints")
		}
		prev, err1 := hex.DecodeString(l.PrevHash)
		sum, err2 := hex.DecodeString(l.Hash)
		if err := errors.Join(err1, err2); err != nil || len(prev) != sha256.Size || len(sum) != sha256.Size {
			return fmt.Errorf("hashes must be %d bytes of hex", sha256.Size)
		}
		es := g.chains[l.Chain]
		if len(es) > 0 && es[len(es)-1].Line.Seq >= l.Seq {
			return fmt.Errorf("chain %s: seq %d after seq %d", l.Chain, l.Seq, es[len(es)-1].Line.Seq)
		}
		g.chains[l.Chain] = append(es, Entry{l, prev, sum})
		g.entries++
	case "checkpoint":
		sum, err1 := hex.DecodeString(l.Hash)
		mac, err2 := hex.DecodeString(l.MAC)
		if err := errors.Join(err1, err2); err != nil || len(sum) != sha256.Size || len(mac) == 0 {
			return fmt.Errorf("checkpoint %s/%d: want a 32-byte hash and a MAC, in hex", l.Chain, l.Seq)
		}
		g.checkpoints = append(g.checkpoints, checkpointLine{l, sum, mac})
	default:
		return fmt.Errorf("type %q is not window, entry, checkpoint or trailer", l.Type)
	}
	return nil
}

// verifySegment checks a segment's trailer: its window is the segment's,
// its counts and chain spans are what the segment holds, and its MAC,
// over all of that and the digest of the segment's bytes, verifies.
func (rep *Report) verifySegment(ctx context.Context, n int, g *segment, key Key) error {
	rep.Checkpoints += len(g.checkpoints)
	broke := func(reason string) {
		rep.Breaks = append(rep.Breaks, Break{Reason: fmt.Sprintf("segment %d: %s", n, reason)})
	}
	t := g.trailer
	switch {
	case t.Since != g.window.Since || t.Until != g.window.Until:
		broke("the trailer names another window than the segment's")
		return nil
	case t.Digest != hex.EncodeToString(g.digest):
		broke("the segment's lines are not the ones its trailer was made over: lines were edited, added, cut or reordered")
		return nil
	case t.Entries != g.entries || t.Checkpoints != len(g.checkpoints) || !slices.Equal(t.Spans, Spans(g.chains)):
		broke("the trailer's counts or chain spans are not the segment's")
		return nil
	}
	msg, err := trailerMessage(t)
	if err != nil {
		broke(err.Error())
		return nil
	}
	mac, err := hex.DecodeString(t.MAC)
	if err != nil {
		broke("the trailer's MAC is not hex")
		return nil
	}
	want, err := key.AuditMACWithVersion(ctx, t.KeyVersion, msg)
	if err != nil && !isKeyRefusal(err) {
		return err
	}
	if err != nil || subtle.ConstantTimeCompare(want, mac) != 1 {
		broke(fmt.Sprintf("the trailer's MAC does not verify under audit key v%d", t.KeyVersion))
	}
	return nil
}

// CheckLinks checks a chain's entries in seq order: consecutive seqs and
// each link to the entry before.
func (rep *Report) CheckLinks(chain string, es []Entry, fromStart bool) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line.Seq < es[j].Line.Seq })
	for i, e := range es {
		broke := func(reason string) {
			rep.Breaks = append(rep.Breaks, Break{Chain: chain, Seq: e.Line.Seq, ID: e.Line.ID, Reason: reason})
		}
		switch {
		case i == 0 && e.Line.Seq == 1 && !bytes.Equal(e.Prev, make([]byte, sha256.Size)):
			broke("the chain's first entry names a previous entry")
		case i == 0 && e.Line.Seq > 1 && fromStart:
			broke(fmt.Sprintf("the chain starts at seq %d in an export from the beginning: entries 1 to %d were removed", e.Line.Seq, e.Line.Seq-1))
		case i == 0 && e.Line.Seq > 1:
			rep.Continued[chain] = e.Line.Seq
		case i > 0 && e.Line.Seq == es[i-1].Line.Seq:
			broke("two entries at one position")
		case i > 0 && e.Line.Seq != es[i-1].Line.Seq+1:
			broke(fmt.Sprintf("entry missing: the chain jumps from seq %d to seq %d", es[i-1].Line.Seq, e.Line.Seq))
		case i > 0 && !bytes.Equal(e.Prev, es[i-1].Sum):
			broke("previous-hash link does not match the entry before it")
		}
	}
}

// CheckHash checks that an entry's hash is over its fields.
func (rep *Report) CheckHash(e Entry) {
	l := e.Line
	row := Row{ID: l.ID, At: l.AtMicros, Actor: l.Actor, Action: l.Action, CardID: l.CardID,
		OwnerID: l.OwnerID, Outcome: l.Outcome, RequestID: l.RequestID, Detail: l.Detail}
	if !bytes.Equal(EntryHash(l.Chain, l.Seq, e.Prev, row), e.Sum) {
		rep.Breaks = append(rep.Breaks, Break{Chain: l.Chain, Seq: l.Seq, ID: l.ID, Reason: "entry does not match its hash: it was edited"})
	}
}

// CheckCheckpoint checks a checkpoint against its chain's entries and
// its MAC.
func (rep *Report) CheckCheckpoint(ctx context.Context, c Line, sum, mac []byte, es []Entry, key Key) error {
	// A checkpoint is stored after the entry it vouches for is written, by
	// the same store and clock, so its entry is in this export or an
	// earlier one, never a later one: one past its chain's end here was
	// cut from the end.
	if len(es) > 0 && c.Seq > es[len(es)-1].Line.Seq {
		rep.Breaks = append(rep.Breaks, Break{Chain: c.Chain, Seq: c.Seq,
			Reason: fmt.Sprintf("checkpoint vouches for seq %d but the chain ends at seq %d in this export: entries were removed", c.Seq, es[len(es)-1].Line.Seq)})
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].Line.Seq >= c.Seq })
	if i == len(es) || es[i].Line.Seq != c.Seq {
		rep.CheckpointsOutside++
	} else if !bytes.Equal(es[i].Sum, sum) {
		rep.Breaks = append(rep.Breaks, Break{Chain: c.Chain, Seq: c.Seq, Reason: "entry differs from the one its checkpoint vouches for"})
	}
	want, err := CheckpointMAC(ctx, key, c.KeyVersion, c.Format, c.Chain, c.Seq, sum)
	if err != nil {
		return err
	}
	if want == nil || subtle.ConstantTimeCompare(want, mac) != 1 {
		rep.Breaks = append(rep.Breaks, Break{Chain: c.Chain, Seq: c.Seq, Reason: fmt.Sprintf("checkpoint MAC does not verify under audit key v%d", c.KeyVersion)})
		return nil
	}
	rep.CheckpointsVerified++
	return nil
}
