package sqlstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/cardvault/cardvault/auditchain"
	"github.com/google/uuid"
)

// The export's format and its verifier are auditchain's; the store reads
// a window of its trail into it (audit export) and checks what it reads
// before the trailer's MAC vouches for it.

// windowID is the smallest UUIDv7 written at or after t.
func windowID(t time.Time) string {
	var u uuid.UUID
	ms := uint64(t.UnixMilli())
	binary.BigEndian.PutUint16(u[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(u[2:6], uint32(ms))
	u[6] = 0x70
	return u.String()
}

// ExportAudit writes one segment: the window [since, until), every
// chained entry written in it, the checkpoints stored in it, and the
// trailer MACed under key's active version. Before the trailer it
// verifies what it wrote (every chain's links; every checkpoint's MAC and
// the entry it vouches for) and refuses to MAC a broken trail: the file
// is then left without a trailer, which no verifier accepts. It returns
// the counts.
func (s *Store) ExportAudit(ctx context.Context, since, until time.Time, w io.Writer, key auditchain.Key) (entries, checkpoints int, err error) {
	out, err := auditchain.NewWriter(w, since, until)
	if err != nil {
		return 0, 0, err
	}
	rep := auditchain.NewReport()
	chains, err := s.exportEntries(ctx, since, until, out, rep)
	if err != nil {
		return 0, 0, err
	}
	if err := s.exportCheckpoints(ctx, since, until, out, chains, key, rep); err != nil {
		return rep.Entries, 0, err
	}
	if len(rep.Breaks) > 0 {
		auditchain.SortBreaks(rep.Breaks)
		return rep.Entries, rep.Checkpoints, fmt.Errorf("the audit trail in the window does not verify, so the export is not MACed: %s (run audit verify)", rep.Breaks[0])
	}
	return rep.Entries, rep.Checkpoints, out.Finish(ctx, since, until, chains, rep, key)
}

// exportEntries writes the window's entries and returns them by chain,
// checked as VerifyExport checks them.
func (s *Store) exportEntries(ctx context.Context, since, until time.Time, out *auditchain.Writer, rep *auditchain.Report) (map[string][]auditchain.Entry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, at, actor, action, card_id, owner_id, outcome, request_id, detail, chain, seq, prev_hash, hash
		FROM audit WHERE chain IS NOT NULL AND id >= ? AND id < ? ORDER BY chain, seq`), windowID(since), windowID(until))
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	chains := map[string][]auditchain.Entry{}
	for rows.Next() {
		var r auditchain.Row
		var l auditchain.Line
		var prev, sum []byte
		if err := rows.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.CardID, &r.OwnerID, &r.Outcome, &r.RequestID, &r.Detail,
			&l.Chain, &l.Seq, &prev, &sum); err != nil {
			return nil, s.fail(err)
		}
		l.Type, l.ID, l.AtMicros, l.At = "entry", r.ID, r.At, fromMicros(r.At).Format(time.RFC3339Nano)
		l.Actor, l.Action, l.CardID, l.OwnerID, l.Outcome, l.RequestID, l.Detail = r.Actor, r.Action, r.CardID, r.OwnerID, r.Outcome, r.RequestID, r.Detail
		l.PrevHash, l.Hash = hex.EncodeToString(prev), hex.EncodeToString(sum)
		if err := out.Write(l); err != nil {
			return nil, err
		}
		e := auditchain.Entry{Line: l, Prev: prev, Sum: sum}
		rep.CheckHash(e)
		// Only the position and hashes are kept: links and checkpoints
		// are checked with them.
		e.Line = auditchain.Line{Chain: l.Chain, Seq: l.Seq, ID: l.ID}
		chains[l.Chain] = append(chains[l.Chain], e)
		rep.Entries++
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(err)
	}
	for chain, es := range chains {
		rep.CheckLinks(chain, es, !since.After(time.Unix(0, 0)))
	}
	return chains, nil
}

// exportCheckpoints writes the window's checkpoints, each checked with
// the token against its MAC and against the entry it vouches for.
func (s *Store) exportCheckpoints(ctx context.Context, since, until time.Time, out *auditchain.Writer, chains map[string][]auditchain.Entry, key auditchain.Key, rep *auditchain.Report) error {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT chain, seq, hash, key_version, mac, at, format FROM audit_checkpoints WHERE at >= ? AND at < ? ORDER BY chain, seq`),
		micros(since), micros(until))
	if err != nil {
		return s.fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var l auditchain.Line
		var sum, mac []byte
		var version int64
		if err := rows.Scan(&l.Chain, &l.Seq, &sum, &version, &mac, &l.AtMicros, &l.Format); err != nil {
			return s.fail(err)
		}
		l.Type, l.Hash, l.MAC, l.KeyVersion = "checkpoint", hex.EncodeToString(sum), hex.EncodeToString(mac), uint32(version)
		l.At = fromMicros(l.AtMicros).Format(time.RFC3339Nano)
		if err := out.Write(l); err != nil {
			return err
		}
		rep.Checkpoints++
		if err := rep.CheckCheckpoint(ctx, l, sum, mac, chains[l.Chain], key); err != nil {
			return err
		}
	}
	return s.fail(rows.Err())
}
