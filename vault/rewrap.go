package vault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KeyVersions names one version of each key that protects stored records.
type KeyVersions struct {
	CardKEK, PANHMAC, PEK uint32
}

// KeyUse counts, per version, what each record-protecting key protects:
// open cards' sealed records (card KEK), their PAN fingerprints
// (pan-hmac) and PIN blocks (PEK). A closed card counts for nothing; its
// sealed record and PIN block are shredded.
type KeyUse struct {
	CardKEK, PANHMAC, PEK map[uint32]int
}

// RewrapKeys is what a rewrap needs from the HSM.
type RewrapKeys interface {
	Keys
	// ActiveVersions returns the versions new writes use.
	ActiveVersions(ctx context.Context) (KeyVersions, error)
	// PEKDecryptBlock deciphers one AES block under a PEK version.
	PEKDecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error)
}

// RewrapStore is what a rewrap needs from the store.
type RewrapStore interface {
	// KeyUse counts records per key version.
	KeyUse(ctx context.Context) (KeyUse, error)
	// CountStale counts open cards with anything under other than the
	// target versions.
	CountStale(ctx context.Context, target KeyVersions) (int, error)
	// StaleCards lists such cards in id order after the cursor.
	StaleCards(ctx context.Context, target KeyVersions, after string, limit int) ([]*Card, error)
	// ApplyRewrap stores each move whose card still holds exactly what
	// the move read (a card closed, re-PINned or rewrapped meanwhile is
	// left alone), all with w in one transaction or none. It returns how
	// many it stored.
	ApplyRewrap(ctx context.Context, moves []Rewrapped, w Write) (int, error)
}

// Rewrapped is one card's protected fields moved to the target versions.
type Rewrapped struct {
	Old           *Card
	Sealed        []byte
	KeyVersion    uint32
	Fingerprint   []byte
	FPVersion     uint32
	PINBlock      []byte
	PINKeyVersion uint32
}

// RewrapProgress is reported after every batch.
type RewrapProgress struct {
	// Total is the stale records when the run started, plus those made
	// stale since that the run met (sealed by a server whose key view
	// predated the rotation).
	Total     int
	Done      int // records moved forward
	Skipped   int // records changed under the run, left for the next pass
	Failed    int // records that would not open: left as they are
	Remaining int
	Elapsed   time.Duration
}

// Rate is records moved per second.
func (p RewrapProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ETA is the time the remaining records take at the current rate.
func (p RewrapProgress) ETA() time.Duration {
	r := p.Rate()
	if r == 0 {
		return 0
	}
	return time.Duration(float64(p.Remaining) / r * float64(time.Second))
}

// RewrapOptions tune a run.
type RewrapOptions struct {
	Batch    int // records per transaction; 0 means 100
	Operator string
	Progress func(RewrapProgress)
	// AfterMove, when set, runs after each record is moved in memory and
	// before its batch is stored. The crash-resume test kills the process
	// from it.
	AfterMove func(moved int)
}

// maxRewrapPasses bounds how often a run goes back for records that
// changed under it.
const maxRewrapPasses = 3

// ErrRewrapIncomplete reports records a rewrap could not move.
var ErrRewrapIncomplete = errors.New("rewrap incomplete")

// Rewrapper moves stored records forward to the active key versions.
type Rewrapper struct {
	keys  RewrapKeys
	store RewrapStore
	now   func() time.Time
}

// NewRewrapper builds a Rewrapper.
func NewRewrapper(keys RewrapKeys, store RewrapStore) *Rewrapper {
	return &Rewrapper{keys: keys, store: store, now: time.Now}
}

// Plan reports the target versions, the records per key version and how
// many open cards hold anything under another version: a dry run.
func (r *Rewrapper) Plan(ctx context.Context) (KeyVersions, KeyUse, int, error) {
	target, err := r.keys.ActiveVersions(ctx)
	if err != nil {
		return target, KeyUse{}, 0, err
	}
	use, err := r.store.KeyUse(ctx)
	if err != nil {
		return target, use, 0, err
	}
	stale, err := r.store.CountStale(ctx, target)
	return target, use, stale, err
}

// Run moves every stale record forward in batches. Each batch is opened,
// re-sealed, re-fingerprinted and PIN-translated in the HSM, then stored
// in one transaction that replaces a card's fields only if they are still
// what the batch read. A run killed at any point leaves every record
// either wholly old or wholly new, and a new run carries on from what is
// still stale. It is safe while the service serves: the service reads
// whichever version a record names, and its writes win over the run's.
func (r *Rewrapper) Run(ctx context.Context, opts RewrapOptions) (RewrapProgress, error) {
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	var p RewrapProgress
	target, err := r.keys.ActiveVersions(ctx)
	if err != nil {
		return p, err
	}
	if p.Total, err = r.store.CountStale(ctx, target); err != nil {
		return p, err
	}
	p.Remaining = p.Total
	start := r.now()
	failed := map[string]bool{}
	for pass := 0; pass < maxRewrapPasses && p.Remaining > 0; pass++ {
		skippedBefore := p.Skipped
		cursor := ""
		for {
			cards, err := r.store.StaleCards(ctx, target, cursor, opts.Batch)
			if err != nil {
				return p, err
			}
			if len(cards) == 0 {
				break
			}
			cursor = cards[len(cards)-1].ID
			moves := make([]Rewrapped, 0, len(cards))
			for _, c := range cards {
				if failed[c.ID] {
					continue
				}
				mv, err := r.move(ctx, c, target)
				if KindOf(err) == KindCrypto {
					failed[c.ID] = true
					p.Failed++
					continue
				}
				if err != nil {
					return p, err
				}
				moves = append(moves, mv)
				if opts.AfterMove != nil {
					opts.AfterMove(len(moves))
				}
			}
			if len(moves) == 0 {
				continue
			}
			n, err := r.store.ApplyRewrap(ctx, moves, Write{Audit: AuditEntry{
				At: r.now().UTC(), Actor: opts.Operator, Action: "key.rewrap", Outcome: "ok",
				Detail: map[string]string{
					"batch":    fmt.Sprint(len(moves)),
					"card_kek": fmt.Sprint(target.CardKEK), "pan_hmac": fmt.Sprint(target.PANHMAC), "pek": fmt.Sprint(target.PEK),
				},
			}})
			if err != nil {
				return p, err
			}
			p.Done += n
			p.Skipped += len(moves) - n
			p.Total = max(p.Total, p.Done+p.Failed)
			p.Remaining = max(p.Total-p.Done-p.Failed, 0)
			p.Elapsed = r.now().Sub(start)
			if opts.Progress != nil {
				opts.Progress(p)
			}
		}
		if p.Skipped == skippedBefore {
			break
		}
	}
	stale, err := r.store.CountStale(ctx, target)
	if err != nil {
		return p, err
	}
	p.Remaining = stale
	p.Elapsed = r.now().Sub(start)
	if stale > 0 {
		return p, fmt.Errorf("%w: %d record(s) still under an old version (%d would not open)", ErrRewrapIncomplete, stale, p.Failed)
	}
	return p, nil
}

// move is the rewrap's narrow path: the card's record is open only here,
// and cleared before it returns.
func (r *Rewrapper) move(ctx context.Context, c *Card, target KeyVersions) (Rewrapped, error) {
	mv := Rewrapped{Old: c, Sealed: c.Sealed, KeyVersion: c.KeyVersion, Fingerprint: c.Fingerprint, FPVersion: c.FPVersion,
		PINBlock: c.PINBlock, PINKeyVersion: c.PINKeyVersion}
	plain, err := r.keys.Open(ctx, []byte(c.ID), c.Sealed)
	if err != nil {
		return mv, err
	}
	defer clear(plain)
	rec, err := decodeRecord(plain)
	if err != nil {
		return mv, ErrCrypto
	}
	defer rec.clear()
	if c.KeyVersion != target.CardKEK {
		if mv.Sealed, mv.KeyVersion, err = r.keys.Seal(ctx, []byte(c.ID), plain); err != nil {
			return mv, err
		}
	}
	if c.FPVersion != target.PANHMAC {
		if mv.Fingerprint, mv.FPVersion, err = r.keys.FingerprintPAN(ctx, rec.PAN); err != nil {
			return mv, err
		}
	}
	if c.PINBlock != nil && c.PINKeyVersion != target.PEK {
		if mv.PINBlock, err = translatePIN(ctx, r.keys, c.PINBlock, c.PINKeyVersion, target.PEK, rec.PAN); err != nil {
			return mv, err
		}
		mv.PINKeyVersion = target.PEK
	}
	return mv, nil
}
