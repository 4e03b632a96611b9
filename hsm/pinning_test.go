package hsm

import (
	"context"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/p11test"
	"github.com/cardvault/cardvault/vault"
	"github.com/miekg/pkcs11"
)

// memCatalog is a KeyRecords of a test's own.
type memCatalog []vault.KeyRecord

func (c *memCatalog) KeyRecords(context.Context) ([]vault.KeyRecord, error) { return *c, nil }

// record records every key the module shows, as a ceremony would.
func (c *memCatalog) record(t *testing.T, m *Module) {
	t.Helper()
	keys, err := m.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Class == "public" {
			continue
		}
		origin := vault.KeyImported
		if k.Local {
			origin = vault.KeyGenerated
		}
		*c = append(*c, vault.KeyRecord{Token: tok.Serial, Label: k.Label, Purpose: string(k.Purpose), Version: k.Version, Check: k.Check, Digest: k.Digest,
			Origin: origin, Extractable: k.Extractable, Ceremony: "test", RecordedAt: time.Now()})
	}
}

// withRawSession runs fn on a session of the module's token logged in as
// the user, as anyone holding the user PIN could.
func withRawSession(t *testing.T, m *Module, fn func(c *conn, sh pkcs11.SessionHandle)) {
	t.Helper()
	c, err := m.current()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.withSession(func(sh pkcs11.SessionHandle) error { fn(c, sh); return nil }); err != nil {
		t.Fatal(err)
	}
}

// Finding 5: with the user PIN alone, the review added DERIVE and WRAP to
// card-kek and SIGN and UNWRAP to the set_pin private key, relabelled
// keys, and set EXTRACTABLE=false on pek. Every key is now not modifiable
// and not copyable.
func TestKeysAreNotModifiableOrCopyable(t *testing.T) {
	m := openKeyedModule(t, CardKEK, PEK, SetPIN)
	withRawSession(t, m, func(c *conn, sh pkcs11.SessionHandle) {
		for _, tc := range []struct {
			label string
			class uint
			attr  *pkcs11.Attribute
		}{
			{"card-kek/v1", classSecret, pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true)},
			{"card-kek/v1", classSecret, pkcs11.NewAttribute(pkcs11.CKA_WRAP, true)},
			{"card-kek/v1", classSecret, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "card-kek/v9")},
			{"set-pin/v1", classPrivate, pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)},
			{"set-pin/v1", classPrivate, pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)},
			{"pek/v1", classSecret, pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false)},
		} {
			h, err := c.handle(sh, tc.label, tc.class)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.p.SetAttributeValue(sh, h, []*pkcs11.Attribute{tc.attr}); err == nil {
				t.Errorf("%s: attribute 0x%x changed with the user PIN", tc.label, tc.attr.Type)
			}
			_, err = m.raw.CopyObject(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, tc.label+"-copy")})
			switch {
			case onNSS() && !c.noCopyable.Load():
				t.Errorf("on NSS the adapter did not learn that CKA_COPYABLE is refused")
			case onNSS():
				// NSS softokn has no CKA_COPYABLE (README); a copy gets a
				// new label, which the pinned catalog never uses.
			case err == nil:
				t.Errorf("%s: copied with the user PIN", tc.label)
			}
		}
	})
}

// Finding 4: with the user PIN, the review planted a non-sensitive,
// extractable card-kek/v7 of known value and pan-hmac/v7, and the server
// made them active because they had the highest labels. With a pinned
// catalog only recorded, matching objects are used.
func TestPinnedCatalogRefusesPlantedAndAlteredKeys(t *testing.T) {
	tok := openKeyedModuleToken(t)
	var catalog memCatalog
	unpinned := tok.open(t, nil)
	catalog.record(t, unpinned)
	unpinned.Close()

	m := tok.open(t, &catalog)
	ctx := context.Background()
	if v, err := m.ActiveVersion(ctx, CardKEK); err != nil || v != 1 {
		t.Fatalf("active card KEK before the plant: %d, %v", v, err)
	}
	// The plant: a known value under a newer label, as C_CreateObject with
	// the user PIN makes it.
	withRawSession(t, m, func(c *conn, sh pkcs11.SessionHandle) {
		for _, p := range []Purpose{CardKEK, PANHMAC} {
			keyType := uint(pkcs11.CKK_AES)
			if p == PANHMAC {
				keyType = pkcs11.CKK_GENERIC_SECRET
			}
			_, err := c.p.CreateObject(sh, p11test.PlantTemplate(Label(p, 7), keyType))
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	// Without a catalog (the adapter as the review found it) the plant
	// wins on its label alone.
	if v, err := tok.open(t, nil).ActiveVersion(ctx, CardKEK); err != nil || v != 7 {
		t.Fatalf("the unpinned adapter's active card KEK: %d, %v; the plant should have made it 7", v, err)
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := m.ActiveVersion(ctx, CardKEK); err != nil || v != 1 {
		t.Fatalf("the planted card-kek/v7 was adopted: active %d, %v", v, err)
	}
	if _, v, err := m.Seal(ctx, []byte("aad"), []byte("record")); err != nil || v != 1 {
		t.Fatalf("a new record was sealed under version %d (%v), want 1", v, err)
	}
	if _, err := m.MACWithVersion(ctx, PANHMAC, 7, []byte("4111111111111111")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the planted pan-hmac/v7 is usable by version: %v", err)
	}
	rejected := rejectionsText(m.Rejections())
	for _, want := range []string{"card-kek/v7 (secret): no ceremony recorded this key", "pan-hmac/v7 (secret): no ceremony recorded this key"} {
		if !strings.Contains(rejected, want) {
			t.Errorf("rejections %q lack %q", rejected, want)
		}
	}
	for _, k := range keys {
		if k.Label == "card-kek/v7" && (k.Active || k.Rejected == "") {
			t.Errorf("Keys shows the plant as %+v", k)
		}
	}
	// A recorded key whose check value no longer matches (a different
	// object under its label) is refused too.
	catalog[0].Digest = "00"
	if _, err := m.Keys(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rejectionsText(m.Rejections()), catalog[0].Label+" (secret): check value") {
		t.Errorf("a check value mismatch is not rejected: %s", rejectionsText(m.Rejections()))
	}
}

// Issue 27, finding 5: a session without the user PIN rewrote the set_pin
// public half's CKA_END_DATE, which set how long the previous version's
// PINs were accepted. With a catalog pinned, the end date is the one the
// rotation recorded in the catalog; the token's attribute counts for
// nothing.
func TestPinnedEndDateIsTheCatalogs(t *testing.T) {
	ctx := context.Background()
	m, catalog, _ := pinnedSetPIN(t, 2)
	// The rewrite: the public half is a public object.
	onPublicHalf(t, m, 1, func(p p11, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		return p.SetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_END_DATE, []byte("20991231"))})
	})
	_, previous, end, err := m.Versions(ctx, SetPIN)
	if err != nil || previous != 1 {
		t.Fatalf("versions: previous %d, %v", previous, err)
	}
	if !end.IsZero() {
		t.Fatalf("the previous set_pin version ends %s, set in the token alone; want no end, since no ceremony recorded one", end.Format(time.DateOnly))
	}
	// The rotation's record is what counts.
	recorded := time.Date(2031, 3, 8, 0, 0, 0, 0, time.UTC)
	for i := range *catalog {
		if (*catalog)[i].Label == Label(SetPIN, 1) {
			(*catalog)[i].EndDate = recorded
		}
	}
	withRawSession(t, m, func(c *conn, sh pkcs11.SessionHandle) {
		if err := c.loadVersions(); err != nil {
			t.Fatal(err)
		}
	})
	if _, _, end, err := m.Versions(ctx, SetPIN); err != nil || !end.Equal(recorded) {
		t.Fatalf("the previous set_pin version ends %s (%v), want the recorded %s", end.Format(time.DateOnly), err, recorded.Format(time.DateOnly))
	}
}

// Issue 27, finding 5: a set_pin public half is a public object, which a
// session without the user PIN can alter or destroy. The vault reads the
// public key from the private half, so neither takes the version down.
func TestSetPINNeedsNoPublicObject(t *testing.T) {
	ctx := context.Background()
	m, _, want := pinnedSetPIN(t, 1)
	onPublicHalf(t, m, 1, func(p p11, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		return p.DestroyObject(sh, h)
	})
	if v, err := m.ActiveVersion(ctx, SetPIN); err != nil || v != 1 {
		t.Fatalf("set_pin after its public object was destroyed: v%d, %v", v, err)
	}
	pub, err := m.PublicKey(ctx, 1)
	if err != nil || !pub.Equal(want) {
		t.Fatalf("the published key after its public object was destroyed: %v", err)
	}
}

// pinnedSetPIN makes set_pin versions 1 to n, records them, and opens
// the token with the catalog pinned; it returns version 1's public key.
func pinnedSetPIN(t *testing.T, n uint32) (*Module, *memCatalog, *rsa.PublicKey) {
	t.Helper()
	tok := openKeyedModuleToken(t)
	unpinned := tok.open(t, nil)
	ctx := context.Background()
	for v := uint32(1); v <= n; v++ {
		if err := unpinned.Generate(ctx, SetPIN, v); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := unpinned.PublicKey(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	catalog := &memCatalog{}
	catalog.record(t, unpinned)
	unpinned.Close()
	return tok.open(t, catalog), catalog, pub
}

// onPublicHalf runs fn on a set_pin version's public object, as any
// session may, and reloads the module's view.
func onPublicHalf(t *testing.T, m *Module, version uint32, fn func(p p11, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) error) {
	t.Helper()
	withRawSession(t, m, func(c *conn, sh pkcs11.SessionHandle) {
		h, err := c.handle(sh, Label(SetPIN, version), classPublic)
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(c.p, sh, h); err != nil {
			t.Fatal(err)
		}
		if err := c.loadVersions(); err != nil {
			t.Fatal(err)
		}
	})
}

// Issue 28: a server whose view of the token predates a rotation met
// records sealed under the new version (by a rewrap, or another replica)
// and answered 500 for every one of them until its view aged out. A
// record naming a version the view does not know makes the module look
// at the token and the catalog again at once, and open it.
func TestOpenRefreshesAStaleView(t *testing.T) {
	tok := openKeyedModuleToken(t)
	unpinned := tok.open(t, nil)
	catalog := &memCatalog{}
	catalog.record(t, unpinned)
	unpinned.Close()
	cfg := Config{Module: tok.module, TokenLabel: tok.label, PIN: tok.pin, Catalog: catalog, KeyRefresh: time.Hour}
	stale, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stale.Close)
	ctx := context.Background()
	if v, err := stale.ActiveVersion(ctx, CardKEK); err != nil || v != 1 {
		t.Fatalf("card KEK v%d, %v", v, err)
	}
	// Another process rotates and records the new version, and seals
	// under it.
	rotator := tok.open(t, nil)
	if err := rotator.Generate(ctx, CardKEK, 2); err != nil {
		t.Fatal(err)
	}
	*catalog = (*catalog)[:0]
	catalog.record(t, rotator)
	sealed, err := rotator.SealWithVersion(ctx, 2, []byte("card-1"), []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := stale.Open(ctx, []byte("card-1"), sealed)
	if err != nil || string(pt) != "record" {
		t.Fatalf("a record under a version newer than the view: %q, %v", pt, err)
	}
	// A version that is truly absent still fails, as a key problem.
	absent := append([]byte{}, sealed...)
	binary.BigEndian.PutUint32(absent[1:5], 9)
	if _, err := stale.Open(ctx, []byte("card-1"), absent); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("a record under an absent version: %v, want ErrKeyNotFound", err)
	}
}

// gatedCatalog is a catalog whose reads can be held or failed.
type gatedCatalog struct {
	memCatalog
	mu      sync.Mutex
	fail    error
	hold    chan struct{} // reads wait on it while set
	entered chan struct{} // a read signals here once it waits
}

func (c *gatedCatalog) KeyRecords(ctx context.Context) ([]vault.KeyRecord, error) {
	c.mu.Lock()
	hold, entered, fail := c.hold, c.entered, c.fail
	c.mu.Unlock()
	if hold != nil {
		entered <- struct{}{}
		<-hold
	}
	if fail != nil {
		return nil, fail
	}
	return c.memCatalog, nil
}

// Issue 28: the refresh interval is a bound. While one caller refreshed
// the view, the others went on with the old one however old it was (a
// 7.8 s old view on a 5 s setting); and a catalog read that failed kept
// the old view and marked it fresh.
func TestStaleViewIsNeverServed(t *testing.T) {
	tok := openKeyedModuleToken(t)
	unpinned := tok.open(t, nil)
	catalog := &gatedCatalog{}
	catalog.record(t, unpinned)
	const refresh = 50 * time.Millisecond
	m, err := Open(Config{Module: tok.module, TokenLabel: tok.label, PIN: tok.pin, Catalog: catalog, KeyRefresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := context.Background()
	// A rotation the view has not seen, then a refresh held in the
	// catalog read while a second caller asks.
	if err := unpinned.Generate(ctx, CardKEK, 2); err != nil {
		t.Fatal(err)
	}
	catalog.memCatalog = catalog.memCatalog[:0]
	catalog.record(t, unpinned)
	time.Sleep(2 * refresh) // the view is now older than its interval
	catalog.mu.Lock()
	catalog.hold, catalog.entered = make(chan struct{}), make(chan struct{}, 1)
	catalog.mu.Unlock()
	first, second := make(chan uint32, 1), make(chan uint32, 1)
	go func() { v, _ := m.ActiveVersion(ctx, CardKEK); first <- v }()
	<-catalog.entered
	go func() { v, _ := m.ActiveVersion(ctx, CardKEK); second <- v }()
	time.Sleep(20 * time.Millisecond) // give the second caller its chance to answer from the old view
	catalog.mu.Lock()
	close(catalog.hold)
	catalog.hold = nil
	catalog.mu.Unlock()
	if a, b := <-first, <-second; a != 2 || b != 2 {
		t.Fatalf("the refreshing caller saw v%d and the one beside it v%d; want v2 for both", a, b)
	}
	// A catalog that cannot be read: once the view is older than its
	// interval, nobody is served from it.
	catalog.mu.Lock()
	catalog.fail = errors.New("database is away")
	catalog.mu.Unlock()
	time.Sleep(2 * refresh)
	if v, err := m.ActiveVersion(ctx, CardKEK); err == nil {
		t.Fatalf("with the catalog unreadable and the view stale, v%d was served", v)
	}
	if v, err := m.ActiveVersion(ctx, CardKEK); err == nil {
		t.Fatalf("a second call after the failed refresh was served v%d from a view marked fresh", v)
	}
	catalog.mu.Lock()
	catalog.fail = nil
	catalog.mu.Unlock()
	if v, err := m.ActiveVersion(ctx, CardKEK); err != nil || v != 2 {
		t.Fatalf("after the catalog came back: v%d, %v", v, err)
	}
}
