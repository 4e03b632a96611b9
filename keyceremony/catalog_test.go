package keyceremony

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
)

// fakeAdmin is a token holding the given key objects; it proves keys as
// softProver does and generates by appending a sound object.
type fakeAdmin struct {
	softProver
	keys   []hsm.KeyInfo
	active map[hsm.Purpose]uint32
}

func (f *fakeAdmin) Keys(context.Context) ([]hsm.KeyInfo, error) { return f.keys, nil }
func (f *fakeAdmin) Token(context.Context) (hsm.TokenInfo, error) {
	return hsm.TokenInfo{Label: "t", Serial: "serial-1"}, nil
}
func (f *fakeAdmin) ActiveVersion(_ context.Context, p hsm.Purpose) (uint32, error) {
	if v, ok := f.active[p]; ok {
		return v, nil
	}
	return 0, hsm.ErrKeyNotFound
}
func (f *fakeAdmin) Generate(_ context.Context, p hsm.Purpose, v uint32) error {
	f.keys = append(f.keys, soundSecret(p, v, "digest-new"))
	return nil
}
func (f *fakeAdmin) KCV(context.Context, hsm.Purpose, uint32) (hsm.CheckValue, error) {
	return hsm.CheckValue{Value: "ABCDEF", Method: "HMAC-SHA256"}, nil
}

// soundSecret is a secret key object the server would accept.
func soundSecret(p hsm.Purpose, v uint32, digest string) hsm.KeyInfo {
	usages := []string{"sign"} // a MAC key
	if p.Kind() == hsm.KindAES {
		usages = []string{"encrypt", "decrypt", "sign"}
	}
	return hsm.KeyInfo{Label: hsm.Label(p, v), Purpose: p, Version: v, Kind: p.Kind(), Class: "secret",
		Sensitive: true, Local: true, Usages: usages, Check: digest[:6], Digest: digest}
}

// memCatalog is a key catalog in memory that answers a label recorded
// twice for a token as the stores do: a conflict.
type memCatalog struct{ records []vault.KeyRecord }

func (c *memCatalog) RecordKey(_ context.Context, r vault.KeyRecord) error {
	for _, old := range c.records {
		if old.Token == r.Token && old.Label == r.Label {
			return vault.Conflict("label", "is recorded")
		}
	}
	c.records = append(c.records, r)
	return nil
}
func (c *memCatalog) KeyRecords(context.Context) ([]vault.KeyRecord, error) { return c.records, nil }
func (c *memCatalog) SetKeyEndDate(_ context.Context, token, label string, day time.Time) error {
	for i := range c.records {
		if c.records[i].Token == token && c.records[i].Label == label {
			c.records[i].EndDate = day
			return nil
		}
	}
	return vault.ErrNotFound
}

func TestRecordKeyRecordsWhatTheTokenShows(t *testing.T) {
	ctx := context.Background()
	tok := &fakeAdmin{keys: []hsm.KeyInfo{soundSecret(hsm.PANHMAC, 1, "digest-one")}}
	cat := &memCatalog{}
	if err := RecordKey(ctx, tok, cat, "pan-hmac/v1", "ceremony-init.txt"); err != nil {
		t.Fatal(err)
	}
	if len(cat.records) != 1 {
		t.Fatalf("%d records", len(cat.records))
	}
	r := cat.records[0]
	if r.Token != "serial-1" || r.Digest != "digest-one" || r.Origin != vault.KeyGenerated || r.Ceremony != "ceremony-init.txt" || r.Version != 1 {
		t.Fatalf("record %+v", r)
	}
	// A ceremony run again records the same key again: fine.
	if err := RecordKey(ctx, tok, cat, "pan-hmac/v1", "again.txt"); err != nil {
		t.Fatalf("the same key recorded twice: %v", err)
	}
	// Another key under the recorded label: refused.
	tok.keys[0].Digest = "digest-two"
	err := RecordKey(ctx, tok, cat, "pan-hmac/v1", "planted.txt")
	if err == nil || !strings.Contains(err.Error(), "records another key under this label") {
		t.Fatalf("another key under a recorded label: %v", err)
	}
}

func TestRecordKeyRefusesWhatTheServerWouldReject(t *testing.T) {
	for name, spoil := range map[string]func(*hsm.KeyInfo){
		"not sensitive": func(k *hsm.KeyInfo) { k.Sensitive = false },
		"modifiable":    func(k *hsm.KeyInfo) { k.Modifiable = true },
		"copyable":      func(k *hsm.KeyInfo) { k.Copyable = true },
		"usages":        func(k *hsm.KeyInfo) { k.Usages = []string{"sign", "derive"} },
		"cannot be computed": func(k *hsm.KeyInfo) {
			k.Digest = ""
		},
	} {
		k := soundSecret(hsm.PANHMAC, 1, "digest-one")
		spoil(&k)
		cat := &memCatalog{}
		err := RecordKey(context.Background(), &fakeAdmin{keys: []hsm.KeyInfo{k}}, cat, "pan-hmac/v1", "x.txt")
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "not recorded") {
			t.Errorf("%s: %v", name, err)
		}
		if len(cat.records) != 0 {
			t.Errorf("%s: recorded anyway", name)
		}
	}
	err := RecordKey(context.Background(), &fakeAdmin{}, &memCatalog{}, "pan-hmac/v1", "x.txt")
	if err == nil || !strings.Contains(err.Error(), "not in the token") {
		t.Errorf("absent key: %v", err)
	}
}

func TestNewVersionProvesAndRecords(t *testing.T) {
	ctx := context.Background()
	cat := &memCatalog{}
	check, err := NewVersion(ctx, &fakeAdmin{}, cat, hsm.PANHMAC, 2, "rotate.txt")
	if err != nil {
		t.Fatal(err)
	}
	if check != "KCV ABCDEF (HMAC-SHA256)" || len(cat.records) != 1 || cat.records[0].Label != "pan-hmac/v2" {
		t.Fatalf("check %q, records %+v", check, cat.records)
	}
	// A key that fails its round trip is never recorded.
	cat = &memCatalog{}
	_, err = NewVersion(ctx, &fakeAdmin{softProver: softProver{broken: "random-mac"}}, cat, hsm.PANHMAC, 2, "rotate.txt")
	if err == nil || !strings.Contains(err.Error(), "failed its round trip") || len(cat.records) != 0 {
		t.Fatalf("a broken key: %v, %d records", err, len(cat.records))
	}
}

func TestBackupForKeepsTheActiveVersionsChoice(t *testing.T) {
	ctx := context.Background()
	wrapped := soundSecret(hsm.CardKEK, 1, "digest-one")
	wrapped.Extractable = true
	for _, tc := range []struct {
		name  string
		tok   *fakeAdmin
		named string
		want  hsm.KeyBackup
	}{
		{"no version yet", &fakeAdmin{}, "", hsm.BackupByVendor},
		{"active is vendor", &fakeAdmin{keys: []hsm.KeyInfo{soundSecret(hsm.CardKEK, 1, "digest-d")}, active: map[hsm.Purpose]uint32{hsm.CardKEK: 1}}, "", hsm.BackupByVendor},
		{"active is wrap", &fakeAdmin{keys: []hsm.KeyInfo{wrapped}, active: map[hsm.Purpose]uint32{hsm.CardKEK: 1}}, "", hsm.BackupByWrap},
		{"named overrides", &fakeAdmin{keys: []hsm.KeyInfo{wrapped}, active: map[hsm.Purpose]uint32{hsm.CardKEK: 1}}, "vendor", hsm.BackupByVendor},
	} {
		got, err := BackupFor(ctx, tc.tok, hsm.CardKEK, tc.named)
		if err != nil || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if _, err := BackupFor(ctx, &fakeAdmin{}, hsm.CardKEK, "tape"); err == nil {
		t.Error("an unknown backup choice was accepted")
	}
}
