package auditchain

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"testing"

	"github.com/cardvault/cardvault/vault"
)

// hmacKey is the audit key in software, with sqlstore's test key bytes,
// under which testdata/export.jsonl was made (sqlstore's
// TestExportFixtureVerifies -update-export writes it).
type hmacKey []byte

var testKey = hmacKey("audit key version one, 32 bytes")

func (k hmacKey) AuditMAC(ctx context.Context, msg []byte) ([]byte, uint32, error) {
	m, err := k.AuditMACWithVersion(ctx, 1, msg)
	return m, 1, err
}

func (k hmacKey) AuditMACWithVersion(_ context.Context, v uint32, msg []byte) ([]byte, error) {
	if v != 1 {
		return nil, vault.ErrNotFound
	}
	m := hmac.New(sha256.New, k)
	m.Write(msg)
	return m.Sum(nil), nil
}

func verifies(data []byte) bool {
	rep, err := Verify(context.Background(), bytes.NewReader(data), testKey)
	return err == nil && len(rep.Breaks) == 0
}

// A format 1 checkpoint message is read only in its one unambiguous
// split, so the renamed checkpoint's message cannot be made; format 2
// length-prefixes every field.
func TestCheckpointMessagesAreUnambiguous(t *testing.T) {
	h := bytes.Repeat([]byte{7}, 32)
	real, ok := CheckpointMessage(1, "0123456789abcdef-3", 12, h)
	if !ok {
		t.Fatal("a format 1 checkpoint is not read")
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], 12)
	shifted := int64(binary.BigEndian.Uint64(append(append([]byte{}, seq[1:]...), h[0])))
	if fake, ok := CheckpointMessage(1, "0123456789abcdef-3\x00", shifted, h[1:]); ok || bytes.Equal(fake, real) {
		t.Fatal("format 1 read a renamed checkpoint")
	}
	a, _ := CheckpointMessage(2, "a", 1, h)
	b, _ := CheckpointMessage(2, "a\x00", 1, h)
	if bytes.Equal(a, b) {
		t.Fatal("format 2 messages collide")
	}
	if _, ok := CheckpointMessage(3, "a", 1, h); ok {
		t.Fatal("an unknown format is read")
	}
}

// FuzzVerifyExport: no input crashes the verifier, and nothing but the
// untouched export verifies. Its seeds hold a trailer whose member name
// differed in case only ("lAst_hash"), which encoding/json read as the
// real one, found by this target.
func FuzzVerifyExport(f *testing.F) {
	data, err := os.ReadFile("testdata/export.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	if !verifies(data) {
		f.Fatal("testdata/export.jsonl does not verify")
	}
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		if verifies(in) && !bytes.Equal(in, data) {
			t.Fatalf("a changed export verifies (%d bytes, the export is %d)", len(in), len(data))
		}
	})
}
