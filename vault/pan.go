package vault

import (
	"crypto/rand"
	"io"
	"math/big"
	"time"

	"github.com/cardvault/cardvault/internal/luhn"
)

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// validatePAN checks a PAN from a processor: 13–19 digits, Luhn-valid.
func validatePAN(pan []byte) *Error {
	switch {
	case !allDigits(pan):
		return Invalid("pan", "must be digits only")
	case len(pan) < 13 || len(pan) > 19:
		return Invalid("pan", "must be 13 to 19 digits")
	case !luhn.Valid(pan):
		return Invalid("pan", "fails the Luhn check")
	}
	return nil
}

// validateCVV checks a card verification value: 3 or 4 digits.
func validateCVV(cvv []byte) *Error {
	if !allDigits(cvv) || len(cvv) < 3 || len(cvv) > 4 {
		return Invalid("cvv", "must be 3 or 4 digits")
	}
	return nil
}

// randomDigits fills b with uniformly random ASCII digits.
func randomDigits(r io.Reader, b []byte) error {
	ten := big.NewInt(10)
	for i := range b {
		n, err := rand.Int(r, ten)
		if err != nil {
			return err
		}
		b[i] = byte('0' + n.Int64())
	}
	return nil
}

// generatePAN makes a 16-digit Luhn-valid PAN under bin.
func generatePAN(r io.Reader, bin string) ([]byte, error) {
	pan := make([]byte, 16)
	copy(pan, bin)
	if err := randomDigits(r, pan[len(bin):15]); err != nil {
		return nil, err
	}
	pan[15] = luhn.CheckDigit(pan[:15])
	return pan, nil
}

// expiryAfter returns the month and year of an expiry years ahead of now;
// a card is valid to the end of that month.
func expiryAfter(now time.Time, years int) (month, year int) {
	t := now.UTC().AddDate(years, 0, 0)
	return int(t.Month()), t.Year()
}

// lastDayOfMonth is the day a card expires at the end of.
func lastDayOfMonth(month, year int) time.Time {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC)
}

// expired reports whether a card expiring at the end of month/year has
// expired at now.
func expired(month, year int, now time.Time) bool {
	return now.UTC().After(lastDayOfMonth(month, year).Add(24*time.Hour - time.Nanosecond))
}
