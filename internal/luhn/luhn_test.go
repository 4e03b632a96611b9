package luhn

import "testing"

func TestValid(t *testing.T) {
	for pan, want := range map[string]bool{
		"4111111111111111": true, "4111111111111112": false,
		"79927398713": true, "79927398710": false, "0": true,
	} {
		if got := Valid([]byte(pan)); got != want {
			t.Errorf("Valid(%s) = %v", pan, got)
		}
	}
}

func TestCheckDigit(t *testing.T) {
	for _, payload := range []string{"411111111111111", "7992739871", "40000012345678"} {
		full := append([]byte(payload), CheckDigit([]byte(payload)))
		if !Valid(full) {
			t.Errorf("%s with its check digit %c fails Luhn", payload, full[len(full)-1])
		}
		full[len(full)-1] = '0' + (full[len(full)-1]-'0'+1)%10
		if Valid(full) {
			t.Errorf("%s with a wrong check digit passes", payload)
		}
	}
}
