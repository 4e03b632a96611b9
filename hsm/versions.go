package hsm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cardvault/cardvault/vault"
	"github.com/miekg/pkcs11"
)

// versionView is what the adapter knows of the token's key versions at one
// moment: the active (highest) version of each purpose and the end date of
// every label that has one. A connection replaces its view at most once per
// Config.KeyRefresh, so a version created by another process is in use
// within that time without a restart.
type versionView struct {
	active map[Purpose]uint32
	// ends maps a label to its last day: the catalog's record, or without
	// a catalog the public half's CKA_END_DATE.
	ends map[string]time.Time
	at   time.Time
	// pinned says a key catalog is in force: only usable labels are
	// used, and rejected lists the objects that are not.
	pinned   bool
	usable   map[string]bool
	rejected []Rejection
	keys     []KeyInfo
}

// loadVersions lists the token and replaces the connection's view. With a
// catalog pinned, the active version of a purpose is its highest usable
// one, never merely its highest label.
func (c *conn) loadVersions() error {
	keys, err := c.listKeys()
	if err != nil {
		return err
	}
	v := &versionView{active: map[Purpose]uint32{}, ends: map[string]time.Time{}, at: time.Now(), usable: map[string]bool{}}
	if c.catalog != nil {
		ctx, cancel := context.WithTimeout(context.Background(), catalogReadTimeout)
		records, err := c.catalog.KeyRecords(ctx)
		cancel()
		if err != nil {
			// The last view stays for what reads it without serving
			// (rejections, metrics) but is not renewed: once older than
			// its interval nobody is served from it, and every call
			// tries the catalog again.
			c.log.Warn("key catalog unreadable; the view is not renewed", "error", err)
			return fmt.Errorf("%w: hsm: read the key catalog: %v", ErrUnavailable, err)
		}
		v.pinned = true
		keys, v.rejected = pin(keys, records, c.serial)
		for _, r := range records {
			if r.Token == c.serial && !r.EndDate.IsZero() {
				v.ends[r.Label] = r.EndDate
			}
		}
		if prev := c.versions.Load(); prev == nil || rejectionsText(prev.rejected) != rejectionsText(v.rejected) {
			for _, r := range v.rejected {
				c.log.Error("key object rejected: not used", "label", r.Label, "class", r.Class, "reason", r.Reason)
			}
		}
	}
	for _, k := range keys {
		if k.Rejected != "" {
			continue
		}
		if !v.pinned && !k.EndDate.IsZero() {
			v.ends[k.Label] = k.EndDate
		}
		if k.Kind == KindRSA && k.Class == "public" {
			continue // a pair is usable by its private half
		}
		v.usable[k.Label] = true
		v.active[k.Purpose] = max(v.active[k.Purpose], k.Version)
	}
	for i := range keys {
		keys[i].Active = keys[i].Rejected == "" && keys[i].Version == v.active[keys[i].Purpose]
	}
	v.keys = keys
	c.versions.Store(v)
	return nil
}

// view returns the connection's version view, listing the token again when
// the view is older than the refresh interval: the interval is a bound,
// so nobody is served from an older view. One caller lists; the others
// wait for its view rather than go on with the old one.
func (c *conn) view() (*versionView, error) {
	if v := c.versions.Load(); time.Since(v.at) < c.refresh {
		return v, nil
	}
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	if v := c.versions.Load(); time.Since(v.at) < c.refresh {
		return v, nil // the caller before us renewed it
	}
	if err := c.loadVersions(); err != nil {
		return nil, err
	}
	return c.versions.Load(), nil
}

// relookEvery bounds how often one label the view lacks is looked for in
// the token again: records naming an absent version cannot make every
// request list the token.
const relookEvery = time.Second

// lookAgain is for a caller that met a label its view does not hold: it
// lists the token and catalog again at once, unless that label was
// looked for within relookEvery, and says whether the label is usable
// now. One caller lists; the others wait for its view.
func (c *conn) lookAgain(label string) bool {
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	if v := c.versions.Load(); v != nil && v.usable[label] {
		return true // another caller's look found it
	}
	if time.Since(c.missed[label]) < relookEvery {
		return false
	}
	if err := c.loadVersions(); err != nil {
		c.log.Warn("looking for a key version outside the view failed", "label", label, "error", err)
		return false
	}
	if c.versions.Load().usable[label] {
		c.log.Info("key version found outside the view; the view is renewed", "label", label)
		return true
	}
	if c.missed == nil {
		c.missed = map[string]time.Time{}
	}
	c.missed[label] = time.Now()
	return false
}

// versionsOf lists a purpose's usable versions, highest (the active one)
// first.
func (v *versionView) versionsOf(p Purpose) []uint32 {
	var out []uint32
	for label := range v.usable {
		if q, version, ok := parseLabel(label); ok && q == p {
			out = append(out, version)
		}
	}
	slices.SortFunc(out, func(a, b uint32) int { return int(b) - int(a) })
	return out
}

func (c *conn) activeVersion(p Purpose) (uint32, error) {
	v, err := c.view()
	if err != nil {
		return 0, err
	}
	if v.active[p] == 0 {
		return 0, fmt.Errorf("%w: no %s key", ErrKeyNotFound, p)
	}
	return v.active[p], nil
}

// ActiveVersion returns the highest version of a purpose present in the
// token, which is the one new writes use. It is ErrKeyNotFound when the
// purpose has no key.
func (m *Module) ActiveVersion(ctx context.Context, p Purpose) (uint32, error) {
	var v uint32
	err := m.do(ctx, "active", func(c *conn) error {
		var err error
		v, err = c.activeVersion(p)
		return err
	})
	return v, err
}

// Versions returns, from one view of the token, the active version of a
// purpose, the version before it (0 when the active one is the first) and
// that version's end date (zero when none is set).
func (m *Module) Versions(ctx context.Context, p Purpose) (active, previous uint32, end time.Time, err error) {
	err = m.do(ctx, "versions", func(c *conn) error {
		v, err := c.view()
		if err != nil {
			return err
		}
		if active = v.active[p]; active == 0 {
			return fmt.Errorf("%w: no %s key", ErrKeyNotFound, p)
		}
		previous = active - 1
		end = v.ends[Label(p, previous)]
		return nil
	})
	return active, previous, end, err
}

// SetPublicEndDate sets CKA_END_DATE, the last day clients may encrypt
// to a key pair's version, on the pair's public half. PKCS#11 dates are
// whole days; the day is taken in UTC.
//
// Only the public half carries it: SoftHSM2 stores the date of a private
// object in clear but decrypts it on reading, so once set it can never be
// read back (CKR_GENERAL_ERROR; SoftHSMv2 issue #655).
func (m *Module) SetPublicEndDate(ctx context.Context, p Purpose, version uint32, day time.Time) error {
	if p.Kind() != KindRSA {
		return fmt.Errorf("hsm: %s has no public half to date", p)
	}
	label := Label(p, version)
	date := []byte(day.UTC().Format("20060102"))
	return m.do(ctx, "set end date", func(c *conn) error {
		err := c.withSession(func(sh pkcs11.SessionHandle) error {
			h, err := c.handle(sh, label, classPublic)
			if err != nil {
				return err
			}
			return describeIf("C_SetAttributeValue", c.p.SetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_END_DATE, date)}))
		})
		if err != nil {
			return err
		}
		return c.loadVersions()
	})
}

// endDate reads a public object's CKA_END_DATE; an empty date reads as
// zero.
func (c *conn) endDate(sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (time.Time, error) {
	attrs, err := c.p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_END_DATE, nil)})
	if err != nil {
		return time.Time{}, describe("C_GetAttributeValue", err)
	}
	if len(attrs) == 0 || len(attrs[0].Value) == 0 {
		return time.Time{}, nil
	}
	day, err := time.Parse("20060102", string(attrs[0].Value))
	if err != nil {
		return time.Time{}, fmt.Errorf("hsm: CKA_END_DATE %q: %w", attrs[0].Value, err)
	}
	return day, nil
}

// ActiveVersions returns the versions of the record-protecting keys that
// new writes use, from one view of the token.
func (m *Module) ActiveVersions(ctx context.Context) (vault.KeyVersions, error) {
	var out vault.KeyVersions
	err := m.do(ctx, "versions", func(c *conn) error {
		for _, k := range []struct {
			p    Purpose
			into *uint32
		}{{CardKEK, &out.CardKEK}, {PANHMAC, &out.PANHMAC}, {PEK, &out.PEK}} {
			v, err := c.activeVersion(k.p)
			if err != nil {
				return err
			}
			*k.into = v
		}
		return nil
	})
	return out, err
}
