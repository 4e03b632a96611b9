// Package keyceremony holds the rules of the key ceremonies, apart from
// their flags, prompts and printing (cmd/cardvault): split-knowledge
// components and their check values, so far. Each rule is unit-tested
// against a fake of the one token operation it needs, and through the
// binary against SoftHSM2 and NSS softokn.
package keyceremony

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cardvault/cardvault/hsm"
)

// Split knowledge: a key is formed from N full-length components, one per
// custodian, combined by XOR. No custodian alone knows anything of the
// key. Each custodian confirms their component by its KCV, computed in
// the token, before anything is combined; a mismatch aborts with nothing
// written. Transcripts record custodians, times and KCVs, never values.

// KCVs is the one token operation split knowledge needs: the check value
// a clear component would have as a key of its kind, computed in the
// token. *hsm.Module has it.
type KCVs interface {
	ValueKCV(ctx context.Context, kind hsm.Kind, value []byte) (hsm.CheckValue, error)
}

// Component is one custodian's share as read from a form or a prompt.
type Component struct {
	Custodian string
	Value     []byte // 32 bytes; Combine clears it
	// Confirmed is the KCV the custodian's form states; empty means the
	// custodian confirms at the prompt (Source.Confirm).
	Confirmed string
}

// Source gives the components, one at a time, and asks a custodian whose
// component stated no KCV to confirm the one the token computed.
type Source interface {
	Component(i int) (Component, error)
	Confirm(i int, custodian string, kcv hsm.CheckValue) (string, error)
}

// Custodian is what a transcript records of a component: who, when, and
// its KCV; never its value.
type Custodian struct {
	Name string
	At   time.Time
	KCV  string
}

// Combine reads n components from src, has each confirmed by its KCV
// (computed by kcvs, announced on say), refuses two with the same KCV
// (identical components cancel out), and returns their XOR with the
// custodians' records. On any failure the partial key is cleared and the
// error ends in "aborted, nothing written". The caller clears the key.
func Combine(ctx context.Context, kcvs KCVs, kind hsm.Kind, n int, src Source, say io.Writer) ([]byte, []Custodian, error) {
	key := make([]byte, 32)
	var records []Custodian
	seen := map[string]int{}
	fail := func(err error) ([]byte, []Custodian, error) {
		clear(key)
		return nil, nil, fmt.Errorf("%w; aborted, nothing written", err)
	}
	for i := 1; i <= n; i++ {
		c, err := src.Component(i)
		if err != nil {
			return fail(fmt.Errorf("component %d: %w", i, err))
		}
		if len(c.Value) != len(key) {
			clear(c.Value)
			return fail(fmt.Errorf("component %d: must be %d bytes", i, len(key)))
		}
		kcv, err := kcvs.ValueKCV(ctx, kind, c.Value)
		if err != nil {
			clear(c.Value)
			return fail(fmt.Errorf("component %d: %w", i, err))
		}
		fmt.Fprintf(say, "component %d (custodian %s): KCV %s\n", i, c.Custodian, kcv)
		if c.Confirmed == "" {
			if c.Confirmed, err = src.Confirm(i, c.Custodian, kcv); err != nil {
				clear(c.Value)
				return fail(fmt.Errorf("component %d: %w", i, err))
			}
		}
		if err := ConfirmKCV(c.Confirmed, kcv); err != nil {
			clear(c.Value)
			return fail(fmt.Errorf("component %d (custodian %s): %w", i, c.Custodian, err))
		}
		if j, dup := seen[kcv.Value]; dup {
			clear(c.Value)
			return fail(fmt.Errorf("component %d (custodian %s) has the same KCV as component %d: identical components cancel out", i, c.Custodian, j))
		}
		seen[kcv.Value] = i
		subtle.XORBytes(key, key, c.Value)
		clear(c.Value)
		records = append(records, Custodian{Name: c.Custodian, At: time.Now().UTC(), KCV: kcv.String()})
	}
	return key, records, nil
}

// ReadComponentForm reads a component form: "custodian: NAME",
// "component: HEX" and "kcv: HEX" lines, in any order.
func ReadComponentForm(path string) (Component, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Component{}, err
	}
	defer clear(b)
	var c Component
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(bytes.TrimSpace(k)) {
		case "custodian":
			c.Custodian = string(bytes.TrimSpace(v))
		case "component":
			clear(c.Value)
			if c.Value, err = ParseComponent(v); err != nil {
				return Component{}, fmt.Errorf("%s: %w", path, err)
			}
		case "kcv":
			c.Confirmed = string(bytes.TrimSpace(v))
		}
	}
	switch {
	case c.Value == nil:
		err = errors.New("no component: line")
	case c.Confirmed == "":
		err = errors.New("no kcv: line")
	default:
		err = ValidCustodian(c.Custodian)
	}
	if err != nil {
		clear(c.Value)
		return Component{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ConfirmKCV holds a custodian's confirmation to the KCV the token made:
// the value, and the method if the form names one ("1A2B3C" or
// "1A2B3C (AES-ECB)"). A form made by another method is refused as such,
// since KCVs by different methods never match.
func ConfirmKCV(confirmed string, kcv hsm.CheckValue) error {
	value, method, _ := strings.Cut(strings.TrimSpace(confirmed), " ")
	method = strings.Trim(strings.TrimSpace(method), "()")
	if method != "" && !strings.EqualFold(method, kcv.Method) {
		return fmt.Errorf("the component form's KCV was made by %s and this token checks by %s; KCVs by different methods never match, so ask for a form with the %s KCV", method, kcv.Method, kcv.Method)
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToUpper(value)), []byte(kcv.Value)) != 1 {
		return fmt.Errorf("its KCV is %s, not the %q the custodian confirmed", kcv, strings.TrimSpace(confirmed))
	}
	return nil
}

// ValidCustodian holds a custodian's name to one short line.
func ValidCustodian(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\r\n\t") {
		return errors.New("custodian name must be 1 to 64 characters on one line")
	}
	return nil
}

// ParseComponent decodes 64 hex digits, ignoring spaces (forms print
// components in groups). It never quotes the input in an error.
func ParseComponent(raw []byte) ([]byte, error) {
	digits := make([]byte, 0, 64)
	defer clear(digits)
	for _, c := range raw {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case len(digits) < 64:
			digits = append(digits, c)
		default:
			return nil, errors.New("component must be 64 hex digits (32 bytes)")
		}
	}
	if len(digits) != 64 {
		return nil, errors.New("component must be 64 hex digits (32 bytes)")
	}
	value := make([]byte, 32)
	if _, err := hex.Decode(value, digits); err != nil {
		clear(value)
		return nil, errors.New("component is not hex")
	}
	return value, nil
}
