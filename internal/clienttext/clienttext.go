// Package clienttext is the one rule for text a client chose on its way
// to the audit trail, a log line, an error answer or a metric label.
//
// The audit trail is hash-chained: what enters it stays. A client that
// sends a PAN where an id, a name or a method belongs (by mistake, or to
// plant card data in the vault's records) must not get it written. So
// client text passes only in an allow-listed shape that cannot carry a
// PAN, and anything else is replaced by Withheld.
package clienttext

import (
	"net/http"
	"strconv"

	"github.com/cardvault/cardvault/internal/luhn"
)

// Withheld stands for client text that did not pass the rule.
const Withheld = "(withheld)"

// separators are what a PAN is commonly written with between its digits;
// a run of digits continues across them.
func separator(c byte) bool { return c == ' ' || c == '-' || c == '_' || c == '.' }

// PANShaped says whether s holds a card number: 13 to 19 digits in a row,
// with separators between them or not, that pass the Luhn check, as every
// PAN the vault accepts does. Card-data scanners use the same test.
func PANShaped(s string) bool {
	var run []byte
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			run = append(run, s[i])
			continue
		}
		if i < len(s) && separator(s[i]) {
			continue
		}
		if luhnWindow(run) {
			return true
		}
		run = run[:0]
	}
	return false
}

// luhnWindow says whether any 13 to 19 digits in a row of run pass Luhn.
func luhnWindow(run []byte) bool {
	for start := 0; start+13 <= len(run); start++ {
		for n := 13; n <= 19 && start+n <= len(run); n++ {
			if luhn.Valid(run[start : start+n]) {
				return true
			}
		}
	}
	return false
}

// IsID says whether s may stand as an id a client sent (a request id, an
// account id, a card or device id before it is found): 1 to 64 letters,
// digits, '.', '_' or '-', and no PAN.
func IsID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return !PANShaped(s)
}

// ID is s if IsID, else Withheld; "" stays "".
func ID(s string) string {
	if s == "" || IsID(s) {
		return s
	}
	return Withheld
}

// Name is a member, field or type name a client sent, fit to be named in
// an error: 1 to 64 letters, digits, '_', '#', '.', '-' or ' ', with at
// most four digits (JWK's x5t#S256 has four; no name of either API has
// more), else Withheld.
func Name(s string) string {
	if len(s) < 1 || len(s) > 64 {
		return Withheld
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '#', c == '.', c == '-', c == ' ':
		default:
			return Withheld
		}
	}
	if digits > 4 {
		return Withheld
	}
	return s
}

// Text is free text a client sent for the record (Solaris's
// device_data), kept unless it holds a PAN.
func Text(s string) string {
	if PANShaped(s) {
		return Withheld
	}
	return s
}

// methods are the HTTP methods a metric label may name.
var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Method is m if it is a method the vault's routes use or answer, else
// "other": a metric label takes its values from a closed set.
func Method(m string) string {
	if methods[m] {
		return m
	}
	return "other"
}

// Status is code as a label if it is 100 to 599 (499 is the vault's
// "client went away"), else "other".
func Status(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
