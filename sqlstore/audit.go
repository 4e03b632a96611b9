package sqlstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardvault/cardvault/auditchain"
	"github.com/cardvault/cardvault/vault"
	"github.com/google/uuid"
)

// The audit trail is tamper-evident. Every entry belongs to a chain and
// carries its position (seq), the hash of the entry before it and its own
// hash over all of its columns, so an edited, deleted or reordered row
// breaks its chain at that row. Every checkpointEvery entries, and when the
// store closes, the chain's position and hash are MACed by the audit key
// in the HSM: that anchors the chain against being rewritten wholesale or
// cut short, for one HSM call per checkpointEvery entries.
//
// Several replicas write at once, and so do several transactions of one
// replica. Each store opens auditChains fresh chains, named by a random
// writer id; a transaction leases one for its life, so a chain grows one
// committed entry at a time and a rolled-back transaction leaves its
// chain as it was.

// auditChains is how many transactions of one store can append at once.
// It matches the most a group commit carries (group.go), so that a full
// group never waits for a chain.
const auditChains = maxGroup

// defaultCheckpointEvery is how many entries a chain takes between
// checkpoints.
const defaultCheckpointEvery = 100

// chainHead is the committed end of one chain.
type chainHead struct {
	id        string
	idx       int // its place among the store's chains
	seq       int64
	hash      []byte
	sealedSeq int64 // the last checkpointed seq
	// stale says the database may hold entries past seq: a transaction
	// on the chain failed, and a commit can land while its client sees
	// an error. The chain's end is read back before it is extended.
	stale bool
}

type chains struct {
	progress
	ids   []string // each chain's name, by index
	free  chan *chainHead
	mu    sync.Mutex // guards key, every and timer
	key   auditchain.Key
	every int64
	// timer checkpoints on time (checkpointOnTime); stop ends it.
	timer *time.Ticker
	stop  chan struct{}
}

// defaultCheckpointInterval bounds how long an entry stays after its
// chain's last checkpoint: a process killed without its closing
// checkpoint leaves at most this much of each chain's tail unsealed.
const defaultCheckpointInterval = 5 * time.Second

func newChains(n int) (*chains, error) {
	writer := make([]byte, 8)
	if _, err := rand.Read(writer); err != nil {
		return nil, err
	}
	c := &chains{free: make(chan *chainHead, n), every: defaultCheckpointEvery, stop: make(chan struct{}),
		progress: progress{committed: make([]atomic.Int64, n), sealed: make([]atomic.Int64, n)}}
	for i := range n {
		c.ids = append(c.ids, fmt.Sprintf("%x-%d", writer, i))
		c.free <- &chainHead{id: c.ids[i], idx: i, hash: make([]byte, sha256.Size)}
	}
	return c, nil
}

// UseAuditKey makes the store checkpoint its chains under key every n
// entries (0 means 100), and every few seconds (CheckpointEvery) while a
// chain has entries past its last checkpoint. Without one, entries are
// chained but not checkpointed.
func (s *Store) UseAuditKey(key auditchain.Key, every int) {
	s.chains.mu.Lock()
	defer s.chains.mu.Unlock()
	s.chains.key = key
	if every > 0 {
		s.chains.every = int64(every)
	}
	if s.chains.timer == nil {
		s.chains.timer = time.NewTicker(defaultCheckpointInterval)
		go s.checkpointOnTime(s.chains.timer.C)
	}
}

// CheckpointEvery sets how often chains with unsealed entries are
// checkpointed (default 5 s), once UseAuditKey has given a key.
func (s *Store) CheckpointEvery(d time.Duration) {
	s.chains.mu.Lock()
	defer s.chains.mu.Unlock()
	if s.chains.timer != nil && d > 0 {
		s.chains.timer.Reset(d)
	}
}

// checkpointOnTime checkpoints, at each tick, every chain whose committed
// end is past its last checkpoint, until the store closes. It needs no
// chain's lease: it reads the committed end's hash from the database.
func (s *Store) checkpointOnTime(tick <-chan time.Time) {
	for {
		select {
		case <-s.chains.stop:
			return
		case <-tick:
		}
		for idx, chain := range s.chains.ids {
			seq := s.chains.committed[idx].Load()
			if seq <= s.chains.sealed[idx].Load() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), defaultCheckpointInterval)
			var hash []byte
			err := s.db.QueryRowContext(ctx, s.q(`SELECT hash FROM audit WHERE chain = ? AND seq = ?`), chain, seq).Scan(&hash)
			if err == nil && s.checkpoint(ctx, chain, seq, hash) == nil {
				s.chains.sealedUpTo(idx, seq)
			}
			cancel()
		}
	}
}

// txn is a write transaction holding the lease on one audit chain.
type txn struct {
	*sql.Tx
	stmts *stmtCache // nil: statements run unprepared
	head  *chainHead
	seq   int64  // the chain's end as this transaction has extended it
	hash  []byte // …and its hash
	// group, in a group commit, is the group's context, which every
	// statement runs under instead of its caller's: SQLite rolls the whole
	// transaction back when a write statement is interrupted, which the
	// driver does when the statement's context ends, so one caller who
	// hangs up would fail every piece of the group.
	group context.Context
	// callerCharged says the write's slot was charged to its caller
	// before the transaction began (chargeCallerApart).
	callerCharged bool
}

// stmtContext is the context a statement of the transaction runs under.
func (t *txn) stmtContext(ctx context.Context) context.Context {
	if t.group != nil {
		return t.group
	}
	return ctx
}

// inTx runs fn in a transaction and commits it, or rolls it back. The
// chain lease is taken before the transaction begins, so no transaction
// holds a database lock while it waits for a chain.
func (s *Store) inTx(ctx context.Context, fn func(*txn) error) error {
	var head *chainHead
	select {
	case head = <-s.chains.free:
	case <-ctx.Done():
		return s.fail(ctx.Err())
	}
	if head.stale {
		if err := s.readChainEnd(ctx, head); err != nil {
			s.chains.free <- head
			return s.fail(err)
		}
	}
	t := &txn{stmts: s.stmts, head: head, seq: head.seq, hash: head.hash}
	err := s.runTx(ctx, t, fn)
	if err == nil {
		if n := t.seq - head.seq; n > 0 {
			s.observer().AuditWritten(int(n))
		}
		head.seq, head.hash = t.seq, t.hash
		s.chains.record(head.idx, head.seq)
	} else {
		head.stale = true
	}
	// The checkpoint names the chain's committed end, read before the
	// lease goes back: a rolled-back transaction's entries never existed.
	due := s.checkpointDue(head)
	chain, idx, seq, hash := head.id, head.idx, head.seq, head.hash
	s.chains.free <- head
	if due {
		if s.checkpoint(ctx, chain, seq, hash) == nil {
			s.chains.sealedUpTo(idx, seq)
		}
	}
	return err
}

// readChainEnd sets a chain's head to its last entry in the database.
func (s *Store) readChainEnd(ctx context.Context, head *chainHead) error {
	var seq int64
	var hash []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT seq, hash FROM audit WHERE chain = ? ORDER BY seq DESC LIMIT 1`), head.id).Scan(&seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		seq, hash = 0, make([]byte, sha256.Size)
	case err != nil:
		return err
	}
	if seq < head.seq {
		return fmt.Errorf("audit chain %s ends at %d in the database, behind the %d this store wrote", head.id, seq, head.seq)
	}
	head.seq, head.hash, head.stale = seq, hash, false
	return nil
}

func (s *Store) runTx(ctx context.Context, t *txn, fn func(*txn) error) error {
	if s.writer != nil {
		return s.runGrouped(ctx, t, fn)
	}
	tx, err := s.db.BeginTx(ctx, s.d.txOpts())
	if err != nil {
		return s.fail(err)
	}
	t.Tx = tx
	start := time.Now()
	if err := fn(t); err != nil {
		_ = tx.Rollback()
		return s.fail(err)
	}
	err = tx.Commit()
	s.observer().Commit(1, time.Since(start), err)
	if err != nil {
		if s.d.isUnique(err) {
			return vault.Conflict("", "concurrent change")
		}
		return s.fail(err)
	}
	return nil
}

// checkpointDue reports whether a chain has grown checkpointEvery entries
// past its last checkpoint, and if so marks it checkpointed: a checkpoint
// that then fails is logged nowhere but caught by the next one.
func (s *Store) checkpointDue(head *chainHead) bool {
	s.chains.mu.Lock()
	defer s.chains.mu.Unlock()
	if s.chains.key == nil || head.seq-max(head.sealedSeq, s.chains.sealed[head.idx].Load()) < s.chains.every {
		return false
	}
	head.sealedSeq = head.seq
	return true
}

// checkpointAll checkpoints every chain with entries past its last
// checkpoint.
func (s *Store) checkpointAll(ctx context.Context) {
	s.chains.mu.Lock()
	hasKey := s.chains.key != nil
	s.chains.mu.Unlock()
	if !hasKey {
		return
	}
	for range cap(s.chains.free) {
		head := <-s.chains.free
		defer func() { s.chains.free <- head }()
		if head.seq > head.sealedSeq {
			if s.checkpoint(ctx, head.id, head.seq, head.hash) == nil {
				head.sealedSeq = head.seq
				s.chains.sealedUpTo(head.idx, head.seq)
			}
		}
	}
}

// checkpoint MACs a chain's position and hash and stores it.
func (s *Store) checkpoint(ctx context.Context, chain string, seq int64, hash []byte) error {
	s.chains.mu.Lock()
	key := s.chains.key
	s.chains.mu.Unlock()
	msg, _ := auditchain.CheckpointMessage(auditchain.CheckpointFormat, chain, seq, hash)
	mac, version, err := key.AuditMAC(ctx, msg)
	if err == nil {
		// A write of its own, outside any chain: it needs no lease. A
		// checkpoint the timer or another trigger already made stands.
		err = s.runTx(ctx, &txn{stmts: s.stmts}, func(t *txn) error {
			_, err := t.ExecContext(ctx, s.q(`INSERT INTO audit_checkpoints (chain, seq, hash, key_version, mac, at, format) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (chain, seq) DO NOTHING`),
				chain, seq, hash, int64(version), mac, micros(time.Now()), int64(auditchain.CheckpointFormat))
			return err
		})
	}
	s.observer().Checkpoint(err)
	return err
}

// CheckpointsUnder counts the checkpoints MACed under an audit key
// version: verification needs that version while any remain.
func (s *Store) CheckpointsUnder(ctx context.Context, version uint32) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM audit_checkpoints WHERE key_version = ?`), int64(version)).Scan(&n)
	return n, s.fail(err)
}

// insertAudit appends an entry to the transaction's chain.
func (s *Store) insertAudit(ctx context.Context, tx *txn, e vault.AuditEntry) error {
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return err
	}
	r := auditchain.Row{ID: id.String(), At: micros(e.At), Actor: e.Actor, Action: e.Action, CardID: e.CardID,
		OwnerID: e.OwnerID, Outcome: e.Outcome, RequestID: e.RequestID, Detail: string(detail)}
	seq := tx.seq + 1
	hash := auditchain.EntryHash(tx.head.id, seq, tx.hash, r)
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO audit (id, at, actor, action, card_id, owner_id, outcome, request_id, detail, chain, seq, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.At, r.Actor, r.Action, r.CardID, r.OwnerID, r.Outcome, r.RequestID, r.Detail, tx.head.id, seq, tx.hash, hash)
	if err != nil {
		return err
	}
	tx.seq, tx.hash = seq, hash
	return nil
}

// AppendAudit records an entry on its own.
func (s *Store) AppendAudit(ctx context.Context, e vault.AuditEntry) error {
	return s.inTx(ctx, func(tx *txn) error { return s.insertAudit(ctx, tx, e) })
}

// AuditTrail returns a card's entries, oldest first.
func (s *Store) AuditTrail(ctx context.Context, cardID string) ([]vault.AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, actor, action, card_id, owner_id, outcome, request_id, detail FROM audit WHERE card_id = ? ORDER BY id`), cardID)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	var out []vault.AuditEntry
	for rows.Next() {
		var e vault.AuditEntry
		var at int64
		var detail string
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.CardID, &e.OwnerID, &e.Outcome, &e.RequestID, &detail); err != nil {
			return nil, s.fail(err)
		}
		e.At = fromMicros(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, s.fail(err)
		}
		out = append(out, e)
	}
	return out, s.fail(rows.Err())
}

// AuditReport is what VerifyAudit found.
type AuditReport struct {
	Chains, Entries, Checkpoints int
	// Unchained counts rows written before the chain existed (migration
	// 00004); nothing vouches for them.
	Unchained int
	// Unsealed counts entries after their chain's last checkpoint: their
	// chain is intact, but their removal from its end would not show.
	Unsealed int
	Breaks   []auditchain.Break // the first break of each broken chain
}

// VerifyAudit walks every chain and checks every checkpoint's MAC with
// key, reporting each chain's first broken link. It reads the checkpoints
// first and the entries after: a checkpoint is written only once its
// entries are committed, so the walk sees every entry a checkpoint it read
// vouches for, while the vault goes on appending and checkpointing (those
// later checkpoints wait for the next verify).
func (s *Store) VerifyAudit(ctx context.Context, key auditchain.Key) (*AuditReport, error) {
	rep := &AuditReport{}
	checkpoints, err := s.readCheckpoints(ctx)
	if err != nil {
		return nil, s.fail(err)
	}
	vouched := map[string]map[int64]bool{}
	for _, cp := range checkpoints {
		if vouched[cp.chain] == nil {
			vouched[cp.chain] = map[int64]bool{}
		}
		vouched[cp.chain][cp.seq] = true
	}
	ends, firstBreak, err := s.walkChains(ctx, rep, vouched)
	if err != nil {
		return nil, s.fail(err)
	}
	lastCheckpoint := map[string]int64{}
	for _, cp := range checkpoints {
		rep.Checkpoints++
		lastCheckpoint[cp.chain] = max(lastCheckpoint[cp.chain], cp.seq)
		want, err := auditchain.CheckpointMAC(ctx, key, uint32(cp.version), cp.format, cp.chain, cp.seq, cp.hash)
		if err != nil {
			return nil, err
		}
		broken := func(reason string) {
			if b, ok := firstBreak[cp.chain]; !ok || cp.seq < b.Seq {
				firstBreak[cp.chain] = auditchain.Break{Chain: cp.chain, Seq: cp.seq, Reason: reason}
			}
		}
		end := ends[cp.chain]
		if end == nil {
			end = &chainEnd{} // every entry of the chain is gone
		}
		switch {
		case want == nil || subtle.ConstantTimeCompare(want, cp.mac) != 1:
			broken(fmt.Sprintf("checkpoint MAC does not verify under audit key v%d", cp.version))
		case cp.seq > end.seq:
			broken(fmt.Sprintf("checkpoint vouches for seq %d but the chain ends at seq %d: entries were removed", cp.seq, end.seq))
		case !bytes.Equal(end.hashes[cp.seq], cp.hash):
			broken("entry differs from the one its checkpoint vouches for")
		}
	}
	for chain, end := range ends {
		rep.Unsealed += int(end.seq - lastCheckpoint[chain])
	}
	for _, b := range firstBreak {
		rep.Breaks = append(rep.Breaks, b)
	}
	auditchain.SortBreaks(rep.Breaks)
	return rep, nil
}

// checkpointRow is one row of audit_checkpoints.
type checkpointRow struct {
	chain        string
	seq, version int64
	format       int64
	hash, mac    []byte
}

// readCheckpoints reads every checkpoint, in chain and seq order: one
// hash and MAC per checkpoint, a hundredth of the entries by default.
func (s *Store) readCheckpoints(ctx context.Context) ([]checkpointRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT chain, seq, hash, key_version, mac, format FROM audit_checkpoints ORDER BY chain, seq`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []checkpointRow
	for rows.Next() {
		var cp checkpointRow
		if err := rows.Scan(&cp.chain, &cp.seq, &cp.hash, &cp.version, &cp.mac, &cp.format); err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, rows.Err()
}

// chainEnd is how far a chain verified, and its hash at each position a
// checkpoint vouches for.
type chainEnd struct {
	seq    int64
	hashes map[int64][]byte
}

// walkChains recomputes every chain in order, and returns where each one
// ends, its hashes at the vouched positions, and where each broken one
// first breaks.
func (s *Store) walkChains(ctx context.Context, rep *AuditReport, vouched map[string]map[int64]bool) (map[string]*chainEnd, map[string]auditchain.Break, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, action, card_id, owner_id, outcome, request_id, detail, chain, seq, prev_hash, hash
		FROM audit ORDER BY chain, seq`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	ends := map[string]*chainEnd{}
	breaks := map[string]auditchain.Break{}
	var prev []byte
	for rows.Next() {
		var r auditchain.Row
		var chain sql.NullString
		var seq sql.NullInt64
		var prevHash, hash []byte
		if err := rows.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.CardID, &r.OwnerID, &r.Outcome, &r.RequestID, &r.Detail,
			&chain, &seq, &prevHash, &hash); err != nil {
			return nil, nil, err
		}
		if !chain.Valid || !seq.Valid {
			rep.Unchained++
			continue
		}
		rep.Entries++
		end, ok := ends[chain.String]
		if !ok {
			end = &chainEnd{hashes: map[int64][]byte{}}
			ends[chain.String] = end
			rep.Chains++
			prev = make([]byte, sha256.Size)
		}
		if _, broken := breaks[chain.String]; broken {
			end.seq = seq.Int64 // later rows still count towards the chain's end
			continue
		}
		broke := func(at int64, id, reason string) {
			breaks[chain.String] = auditchain.Break{Chain: chain.String, Seq: at, ID: id, Reason: reason}
			end.seq = seq.Int64
		}
		want := end.seq + 1
		switch {
		case seq.Int64 != want:
			broke(want, "", fmt.Sprintf("entry missing: the chain jumps from seq %d to seq %d (row %s)", end.seq, seq.Int64, r.ID))
		case !bytes.Equal(prevHash, prev):
			broke(seq.Int64, r.ID, "previous-hash link does not match the entry before it: an entry was removed, reordered or edited")
		case !bytes.Equal(auditchain.EntryHash(chain.String, seq.Int64, prev, r), hash):
			broke(seq.Int64, r.ID, "entry does not match its hash: it was edited")
		default:
			end.seq = seq.Int64
			if vouched[chain.String][seq.Int64] {
				end.hashes[seq.Int64] = hash
			}
			prev = hash
		}
	}
	return ends, breaks, rows.Err()
}

// AuditKey is the key the store checkpoints its chains under.
type AuditKey = auditchain.Key

// AuditBreak is where a chain fails verification.
type AuditBreak = auditchain.Break
