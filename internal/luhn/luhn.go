// Package luhn is the Luhn (mod 10) check every card number carries: the
// vault refuses PANs that fail it and makes issued PANs pass it, and the
// client-text rule uses it to tell a card number from other digits.
package luhn

// sum is the Luhn sum of digits (ASCII), doubling every second digit from
// the right, starting with the rightmost when doubleRightmost.
func sum(digits []byte, doubleRightmost bool) int {
	s, double := 0, doubleRightmost
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		s, double = s+d, !double
	}
	return s
}

// Valid reports whether digits (ASCII) pass the Luhn check.
func Valid(digits []byte) bool { return sum(digits, false)%10 == 0 }

// CheckDigit returns the digit that makes payload‖digit Luhn-valid.
func CheckDigit(payload []byte) byte {
	return byte('0' + (10-sum(payload, true)%10)%10)
}
