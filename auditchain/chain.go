// Package auditchain is the audit trail's cryptographic format: how an
// entry is hashed into its chain, what a checkpoint's MAC covers, and the
// export an auditor verifies offline with the token's audit key. The
// stores write and read the trail; this package says what its bytes mean,
// and has no database in it, so its verifier can be fuzzed on its own.
package auditchain

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cardvault/cardvault/vault"
)

// Key MACs checkpoints and export trailers; the HSM's audit key
// implements it.
type Key interface {
	// AuditMAC is the MAC of msg under the active audit key, and its
	// version.
	AuditMAC(ctx context.Context, msg []byte) ([]byte, uint32, error)
	// AuditMACWithVersion is the MAC of msg under a named version.
	AuditMACWithVersion(ctx context.Context, version uint32, msg []byte) ([]byte, error)
}

// Row is an audit entry as stored: the entry's columns as text, so
// the hash is over exactly what the database holds.
type Row struct {
	ID, Actor, Action, CardID, OwnerID, Outcome, RequestID, Detail string
	At                                                             int64
}

// EntryHash is the hash of an entry at seq in a chain whose previous
// entry hashed to prev. Every field is length-prefixed, so no two rows
// encode alike.
func EntryHash(chain string, seq int64, prev []byte, r Row) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.BigEndian.PutUint32(n[:4], uint32(len(s)))
		h.Write(n[:4])
		h.Write([]byte(s))
	}
	number := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	field("cardvault-audit-v1")
	field(chain)
	number(seq)
	field(string(prev))
	field(r.ID)
	number(r.At)
	for _, f := range []string{r.Actor, r.Action, r.CardID, r.OwnerID, r.Outcome, r.RequestID, r.Detail} {
		field(f)
	}
	return h.Sum(nil)
}

// CheckpointFormat is the message format new checkpoints are MACed in.
const CheckpointFormat = 2

// CheckpointMessage is what a checkpoint's MAC covers in a format. Format
// 1 (before issue 27) was not length-prefixed; it is read only with a
// hash of exactly 32 bytes and a chain name without NUL, which is the
// one way to split its bytes, so old checkpoints still verify and none
// can be renamed. ok is false for anything else.
func CheckpointMessage(format int64, chain string, seq int64, hash []byte) (msg []byte, ok bool) {
	switch format {
	case 1:
		if len(hash) != sha256.Size || strings.ContainsRune(chain, 0) {
			return nil, false
		}
		msg = fmt.Appendf(nil, "cardvault-audit-checkpoint-v1\x00%s\x00", chain)
		msg = binary.BigEndian.AppendUint64(msg, uint64(seq))
		return append(msg, hash...), true
	case 2:
		return MACMessage("cardvault-audit-checkpoint-v2", []byte(chain), binary.BigEndian.AppendUint64(nil, uint64(seq)), hash), true
	}
	return nil, false
}

// MACMessage is a message for the audit key: a domain name, then each
// field, every one behind its 4-byte length, so no two messages of any
// domain encode alike.
func MACMessage(domain string, fields ...[]byte) []byte {
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(domain)))
	msg = append(msg, domain...)
	for _, f := range fields {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(f)))
		msg = append(msg, f...)
	}
	return msg
}

// Break is the first place a chain fails verification.
type Break struct {
	Chain  string
	Seq    int64  // the position that fails
	ID     string // the audit row there, if there is one
	Reason string
}

func (b Break) String() string {
	if b.Chain == "" {
		return b.Reason // the export as a whole, not a chain
	}
	row := b.ID
	if row == "" {
		row = "none"
	}
	return fmt.Sprintf("chain %s seq %d (audit id %s): %s", b.Chain, b.Seq, row, b.Reason)
}

// CheckpointMAC is the MAC a checkpoint should carry, or nil when none
// can (a format it does not know, a key version the token lacks); an
// error is the token's failure, not the checkpoint's.
func CheckpointMAC(ctx context.Context, key Key, version uint32, format int64, chain string, seq int64, hash []byte) ([]byte, error) {
	msg, ok := CheckpointMessage(format, chain, seq, hash)
	if !ok {
		return nil, nil
	}
	want, err := key.AuditMACWithVersion(ctx, version, msg)
	if isKeyRefusal(err) {
		return nil, nil
	}
	return want, err
}

// isKeyRefusal says the token refused a MAC for the key, not for itself:
// a version it does not hold, or one that cannot MAC.
func isKeyRefusal(err error) bool {
	return err != nil && (vault.KindOf(err) == vault.KindCrypto || errors.Is(err, vault.ErrNotFound))
}

// SortBreaks orders breaks by chain, then position, as reports print them.
func SortBreaks(breaks []Break) {
	sort.Slice(breaks, func(i, j int) bool {
		if breaks[i].Chain != breaks[j].Chain {
			return breaks[i].Chain < breaks[j].Chain
		}
		return breaks[i].Seq < breaks[j].Seq
	})
}
