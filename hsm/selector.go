package hsm

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// A token is selected by any of its label, its serial number and its slot;
// every one given must match, and exactly one token may. Labels are not
// unique on every vendor's module, and serials are not on every module
// either (every NSS database reports a serial of sixteen zeros).

// selector names the configured selection for messages.
func (c *Config) selector() string {
	var parts []string
	if c.TokenLabel != "" {
		parts = append(parts, fmt.Sprintf("label %q", c.TokenLabel))
	}
	if c.TokenSerial != "" {
		parts = append(parts, fmt.Sprintf("serial %q", c.TokenSerial))
	}
	if c.Slot != nil {
		parts = append(parts, fmt.Sprintf("slot %d", *c.Slot))
	}
	return "token with " + strings.Join(parts, ", ")
}

// crypto11Selector gives crypto11, which takes exactly one selector, the
// most specific one configured; findSlot checks that it leads to the same
// token as all of them together.
func (c *Config) crypto11Selector(cc *crypto11.Config) {
	switch {
	case c.Slot != nil:
		slot := int(*c.Slot)
		cc.SlotNumber = &slot
	case c.TokenSerial != "":
		cc.TokenSerial = c.TokenSerial
	default:
		cc.TokenLabel = c.TokenLabel
	}
}

// findSlot finds the one token the configuration selects.
func findSlot(p p11, cfg *Config) (uint, pkcs11.TokenInfo, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, pkcs11.TokenInfo{}, fmt.Errorf("hsm: C_GetSlotList: %w", err)
	}
	trim := func(s string) string { return strings.TrimRight(s, " \x00") }
	var matches []uint
	var info pkcs11.TokenInfo
	crypto11Pick, picked := uint(0), false
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		label, serial := trim(ti.Label), trim(ti.SerialNumber)
		all := (cfg.TokenLabel == "" || label == cfg.TokenLabel) &&
			(cfg.TokenSerial == "" || serial == cfg.TokenSerial) &&
			(cfg.Slot == nil || s == *cfg.Slot)
		if all {
			matches = append(matches, s)
			info = ti
		}
		byCrypto11 := (cfg.Slot != nil && s == *cfg.Slot) ||
			(cfg.Slot == nil && cfg.TokenSerial != "" && serial == cfg.TokenSerial) ||
			(cfg.Slot == nil && cfg.TokenSerial == "" && label == cfg.TokenLabel)
		if byCrypto11 && !picked {
			crypto11Pick, picked = s, true
		}
	}
	switch {
	case len(matches) == 0:
		return 0, info, fmt.Errorf("hsm: no %s", cfg.selector())
	case len(matches) > 1:
		return 0, info, fmt.Errorf("hsm: %d tokens match the %s (slots %v); add the serial or the slot to pick one", len(matches), cfg.selector(), matches)
	case crypto11Pick != matches[0]:
		return 0, info, fmt.Errorf("hsm: the %s is in slot %d, but another token (slot %d) comes first by its most specific part; select it by slot", cfg.selector(), matches[0], crypto11Pick)
	}
	return matches[0], info, nil
}

// URI is what an RFC 7512 PKCS#11 URI configures: the module, the token
// and where its PIN is.
type URI struct {
	Module                  string
	TokenLabel, TokenSerial string
	Slot                    *uint
	// PINFile is the file pin-source names; a PIN in the URI itself
	// (pin-value) is refused, since URIs end up in logs.
	PINFile string
}

// ParseURI reads a PKCS#11 URI (RFC 7512), e.g.
// "pkcs11:token=cardvault;serial=1a2b?module-path=/usr/lib/vendor.so&pin-source=file:/run/secrets/pin".
// It takes the token attributes token, serial and slot-id, and module-path
// and pin-source; any other attribute is refused rather than ignored, since
// ignoring one could select another token than the operator meant.
func ParseURI(s string) (URI, error) {
	var u URI
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return u, fmt.Errorf("PKCS#11 URI: want pkcs11:token=...")
	}
	path, query, _ := strings.Cut(rest, "?")
	// A repeated attribute would select by its last value (token=a;token=b
	// opens b) and an empty one fall back to a default: both are refused
	// by name.
	seen := map[string]bool{}
	attrs := func(part, sep string, set func(k, v string) error) error {
		if part == "" {
			return nil
		}
		for _, kv := range strings.Split(part, sep) {
			k, raw, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("PKCS#11 URI: attribute %q has no value", k)
			}
			if seen[k] {
				return fmt.Errorf("PKCS#11 URI: attribute %q is given twice", k)
			}
			seen[k] = true
			v, err := url.PathUnescape(raw)
			if err != nil {
				return fmt.Errorf("PKCS#11 URI: attribute %s: %w", k, err)
			}
			if v == "" {
				return fmt.Errorf("PKCS#11 URI: attribute %q is empty", k)
			}
			if err := set(k, v); err != nil {
				return err
			}
		}
		return nil
	}
	err := attrs(path, ";", func(k, v string) error {
		switch k {
		case "token":
			u.TokenLabel = v
		case "serial":
			u.TokenSerial = v
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("PKCS#11 URI: slot-id %q is not a number", v)
			}
			slot := uint(n)
			u.Slot = &slot
		default:
			return fmt.Errorf("PKCS#11 URI: path attribute %q is not one cardvault selects by (token, serial, slot-id)", k)
		}
		return nil
	})
	if err != nil {
		return URI{}, err
	}
	err = attrs(query, "&", func(k, v string) error {
		switch k {
		case "module-path":
			u.Module = v
		case "pin-source":
			file, err := fileURIPath(v)
			if err != nil {
				return err
			}
			u.PINFile = file
		case "pin-value":
			return fmt.Errorf("PKCS#11 URI: pin-value puts the PIN where logs and process listings show it; use pin-source=file:PATH")
		default:
			return fmt.Errorf("PKCS#11 URI: query attribute %q is not one cardvault takes (module-path, pin-source)", k)
		}
		return nil
	})
	if err != nil {
		return URI{}, err
	}
	if u.TokenLabel == "" && u.TokenSerial == "" && u.Slot == nil {
		return URI{}, fmt.Errorf("PKCS#11 URI: no token, serial or slot-id selects a token")
	}
	return u, nil
}

// fileURIPath reads a pin-source as RFC 8089 reads a file URI: file:/p,
// file:///p and file://localhost/p name the local file /p; another host,
// a relative path or no path at all is refused.
func fileURIPath(v string) (string, error) {
	rest, ok := strings.CutPrefix(v, "file:")
	if !ok {
		return "", fmt.Errorf("PKCS#11 URI: pin-source %q, want file:PATH", v)
	}
	if authority, ok := strings.CutPrefix(rest, "//"); ok {
		host, p, _ := strings.Cut(authority, "/")
		if host != "" && host != "localhost" {
			return "", fmt.Errorf("PKCS#11 URI: pin-source names host %q; only a local file is read", host)
		}
		rest = "/" + p
	}
	switch {
	case rest == "" || rest == "/":
		return "", fmt.Errorf("PKCS#11 URI: pin-source names no file")
	case !strings.HasPrefix(rest, "/"):
		return "", fmt.Errorf("PKCS#11 URI: pin-source file %q must be an absolute path", rest)
	}
	return rest, nil
}
