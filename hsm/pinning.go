package hsm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// KeyRecords is where the ceremonies' key records are read from: the
// store. With it configured the adapter pins the catalog: it uses a key
// object only if a ceremony recorded its label, check value, origin and
// export policy and the object has exactly the attributes its purpose
// needs. Anyone with the user PIN can create objects; only a ceremony,
// which also holds the database, can record them.
type KeyRecords interface {
	KeyRecords(ctx context.Context) ([]vault.KeyRecord, error)
}

// Rejection is a key object the adapter will not use, and why.
type Rejection struct {
	Label, Class, Reason string
}

func (r Rejection) String() string { return r.Label + " (" + r.Class + "): " + r.Reason }

// catalogReadTimeout bounds the database read a key refresh makes.
const catalogReadTimeout = 5 * time.Second

// wantUsages is exactly the usage flags an object of a purpose and class
// has, in usageAttrs order.
func wantUsages(p Purpose, class string) []string {
	switch {
	case class == "public":
		return []string{"encrypt"}
	case class == "private":
		return []string{"decrypt"}
	case p == ZonePIN:
		return []string{"decrypt", "sign"}
	case p.Kind() == KindAES:
		// sign: the KCV (CMAC of a zero block) only.
		return []string{"encrypt", "decrypt", "sign"}
	}
	return []string{"sign"}
}

// Mismatch says why a key object does not match a record, or "" when it
// does: what a ceremony checks before it records a key it made.
func Mismatch(k KeyInfo, rec vault.KeyRecord) string { return reject(k, &rec) }

// reject says why an object does not match its record, or "" when it does.
func reject(k KeyInfo, rec *vault.KeyRecord) string {
	switch {
	case rec == nil:
		return "no ceremony recorded this key"
	case k.Digest == "":
		return "its check value cannot be computed"
	case k.Digest != rec.Digest:
		return fmt.Sprintf("check value %s differs from the recorded %s", k.Check, rec.Check)
	case !slices.Equal(k.Usages, wantUsages(k.Purpose, k.Class)):
		return fmt.Sprintf("usages %v, want %v", k.Usages, wantUsages(k.Purpose, k.Class))
	case k.Class == "public":
		// A public half holds no secret; it stays modifiable so that a
		// rotation can set its end date.
		return ""
	case !k.Sensitive:
		return "not sensitive"
	case k.Modifiable:
		return "modifiable"
	case k.Copyable:
		return "copyable"
	case k.Extractable != rec.Extractable:
		return fmt.Sprintf("extractable=%v, the ceremony chose %v", k.Extractable, rec.Extractable)
	case rec.Origin == vault.KeyGenerated && !k.Local:
		return "recorded as generated in the token, but CKA_LOCAL is false"
	}
	return ""
}

// usedClass is the one object class the vault uses under a purpose's
// labels. A key pair's public half is not used: the public key is read
// from the private half, so a public object, which a session without the
// user PIN can alter or destroy, decides nothing.
func usedClass(p Purpose) string {
	if p.Kind() == KindRSA {
		return "private"
	}
	return "secret"
}

// pin marks the objects that do not match their records for the token
// (by serial). A version is usable only if every object under its label
// of a class the vault uses there matches, and a key pair only with both
// halves present. An object of another class (a public key under a
// secret key's label, which a session without the user PIN can make) is
// refused on its own: the vault never looks it up, so it takes nothing
// down.
func pin(keys []KeyInfo, records []vault.KeyRecord, token string) ([]KeyInfo, []Rejection) {
	byLabel := map[string]*vault.KeyRecord{}
	for i := range records {
		if records[i].Token == token {
			byLabel[records[i].Label] = &records[i]
		}
	}
	bad := map[string]string{}
	classes := map[string][]string{}
	for i := range keys {
		k := &keys[i]
		if k.Class == "public" && k.Kind == KindRSA {
			// Checked, but on its own: the vault reads the public key
			// from the private half. Its end date is the ceremony's,
			// never the object's, which anyone can rewrite.
			k.EndDate = time.Time{}
			if rec := byLabel[k.Label]; rec != nil {
				k.EndDate = rec.EndDate
			}
			k.Rejected = reject(*k, byLabel[k.Label])
			continue
		}
		if k.Class != usedClass(k.Purpose) {
			k.Rejected = fmt.Sprintf("a %s object, which %s never has: ignored", k.Class, k.Purpose)
			continue
		}
		classes[k.Label] = append(classes[k.Label], k.Class)
		if reason := reject(*k, byLabel[k.Label]); reason != "" {
			k.Rejected = reason
			bad[k.Label] = reason
		}
	}
	for label, cs := range classes {
		p, _, _ := parseLabel(label)
		if p.Kind() == KindRSA && bad[label] == "" && !slices.Contains(cs, "private") {
			bad[label] = "the private half is missing"
		}
	}
	var out []Rejection
	for i := range keys {
		k := &keys[i]
		if k.Rejected == "" && bad[k.Label] != "" {
			k.Rejected = "another object of its label is rejected: " + bad[k.Label]
		}
		if k.Rejected != "" {
			out = append(out, Rejection{Label: k.Label, Class: k.Class, Reason: k.Rejected})
		}
	}
	return keys, out
}

// Rejections lists the key objects the adapter refuses to use, as of its
// last look at the token; empty when no catalog is pinned.
func (m *Module) Rejections() []Rejection {
	c, err := m.current()
	if err != nil {
		return nil
	}
	if v := c.versions.Load(); v != nil {
		return v.rejected
	}
	return nil
}

// RequireKeys reports whether every purpose has a usable active version:
// with a pinned catalog, a recorded key that matches its record.
func (m *Module) RequireKeys(ctx context.Context) error {
	for _, p := range Purposes {
		if _, err := m.ActiveVersion(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// rejectionsText is the rejections on one line, for logs and /readyz.
func rejectionsText(rs []Rejection) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}
