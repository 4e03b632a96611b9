package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

var pinScopes = []string{"cards:write", "cards:read", "cards:reveal", "pin:write", "sandbox", "devices:write"}

// runPINFlow runs the guide's PIN flow and returns the status line and
// body.
func runPINFlow(t *testing.T, jv *jikoVault, account, card, pin string) (string, string) {
	t.Helper()
	return runPINFlowTo(t, jv, "", account, card, pin)
}

// runPINFlowTo runs the guide's PIN flow with a set_pin key file the client
// kept, or the key it fetches when keyFile is "".
func runPINFlowTo(t *testing.T, jv *jikoVault, keyFile, account, card, pin string) (string, string) {
	t.Helper()
	for _, tool := range []string{"openssl", "curl", "jq", "base64"} {
		testenv.RequireCommand(t, tool)
	}
	script, _ := filepath.Abs("testdata/jiko-pin-flow.sh")
	cmd := exec.Command("bash", script, jv.base, account, card, pin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TOKEN="+jv.token, "SET_PIN_PUB="+keyFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr // openssl 3 warns that rsautl is deprecated
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pin flow: %v\n%s%s", err, out, stderr.String())
	}
	status, body, _ := strings.Cut(string(out), "\n")
	return status, strings.TrimSpace(body)
}

type orderView struct {
	CardID      *string `json:"card_id"`
	CardOrderID string  `json:"card_order_id"`
	Status      string  `json:"status"`
	NameOnCard  string  `json:"name_on_card"`
}

func TestJikoPhysicalCardOrderAndPINWithOpenSSL(t *testing.T) {
	jv := newServedVault(t, pinScopes, envPINPerCard+"=8")
	accts := jv.base + "/api/v1/jiko-accounts/"
	address := map[string]any{"street_address": "1 Main St", "city": "Springfield", "postal_code": "62701", "state": "IL", "country": "US"}
	order := func(body map[string]any) response { return jv.post(t, accts+"acct-1/card-orders", body, nil) }

	for _, c := range []struct {
		name, loc string
		body      map[string]any
	}{
		{"no name", `["body","name_on_card"]`, map[string]any{"shipping_address": address}},
		{"long name", `["body","name_on_card"]`, map[string]any{"name_on_card": strings.Repeat("A", 101), "shipping_address": address}},
		{"no address", `["body","shipping_address"]`, map[string]any{"name_on_card": "ADA"}},
		{"bad state", `["body","shipping_address","state"]`, map[string]any{"name_on_card": "ADA", "shipping_address": merge(clone(address), "state", "XX")}},
		{"long postal code", `["body","shipping_address","postal_code"]`, map[string]any{"name_on_card": "ADA", "shipping_address": merge(clone(address), "postal_code", "12345678901")}},
		{"no city", `["body","shipping_address","city"]`, map[string]any{"name_on_card": "ADA", "shipping_address": merge(clone(address), "city", "")}},
		{"long street", `["body","shipping_address","street_address"]`, map[string]any{"name_on_card": "ADA", "shipping_address": merge(clone(address), "street_address", strings.Repeat("x", 101))}},
	} {
		if r := order(c.body); r.status != 422 || !strings.Contains(r.body, `"loc":`+c.loc) {
			t.Errorf("%s: %d %s, want 422 at %s", c.name, r.status, r.body, c.loc)
		}
	}

	r := order(map[string]any{"name_on_card": "ADA LOVELACE", "shipping_address": address})
	var o orderView
	json.Unmarshal([]byte(r.body), &o)
	if r.status != 201 || o.Status != "INITIAL" || o.CardID != nil || !strings.Contains(r.body, `"object_type":"card_order"`) {
		t.Fatalf("create order: %d %s", r.status, r.body)
	}
	if r := jv.do(t, "GET", accts+"acct-1/card-orders/"+o.CardOrderID, nil, nil); !strings.Contains(r.body, `"status":"INITIAL"`) {
		t.Fatalf("read order: %s", r.body)
	}
	if r := jv.do(t, "GET", accts+"acct-2/card-orders/"+o.CardOrderID, nil, nil); r.status != 404 {
		t.Fatalf("another account reads the order: %d", r.status)
	}

	// The sandbox produces the card: the order moves INITIAL → CARD_CREATED
	// → ORDERED, and the card waits NOT_ACTIVATED for its PIN.
	gen := jv.post(t, jv.base+"/api/v1/sandbox/generate-card", map[string]string{"card_order_id": o.CardOrderID}, nil)
	json.Unmarshal([]byte(gen.body), &o)
	if gen.status != 202 || o.Status != "ORDERED" || o.CardID == nil {
		t.Fatalf("generate card: %d %s", gen.status, gen.body)
	}
	card := *o.CardID
	if r := jv.post(t, jv.base+"/api/v1/sandbox/generate-card", map[string]string{"card_order_id": o.CardOrderID}, nil); r.status != 409 || !strings.Contains(r.body, "ORDERED and cannot become CARD_CREATED") {
		t.Fatalf("generating twice: %d %s", r.status, r.body)
	}
	status := func() string { return jv.do(t, "GET", accts+"acct-1/cards/"+card+"/status", nil, nil).body }
	if s := status(); !strings.Contains(s, `"status":"NOT_ACTIVATED"`) {
		t.Fatalf("card before PIN: %s", s)
	}

	// Every unusable PIN gets the same status and body.
	var refusals []string
	for _, pin := range []string{"1234", "1111", "98a7", "13579"} {
		st, body := runPINFlow(t, jv, "acct-1", card, pin)
		refusals = append(refusals, st+" "+body)
	}
	garbage := jv.post(t, accts+"acct-1/cards/"+card+"/pin", map[string]string{"encrypted_pin": "bm90IGEgY2lwaGVydGV4dA=="}, nil)
	refusals = append(refusals, fmt.Sprint(garbage.status)+" "+strings.TrimSpace(garbage.body))
	for _, r := range refusals {
		if r != refusals[0] || !strings.HasPrefix(r, "422 ") || !strings.Contains(r, `"loc":["body","encrypted_pin"]`) {
			t.Fatalf("refusals differ or are wrong:\n%s", strings.Join(refusals, "\n"))
		}
	}
	if s := status(); !strings.Contains(s, `"status":"NOT_ACTIVATED"`) {
		t.Fatalf("card after refused PINs: %s", s)
	}

	if st, body := runPINFlow(t, jv, "acct-1", card, "1357"); st != "200" || body != `{"success":true}` {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	if s := status(); !strings.Contains(s, `"status":"OPEN"`) {
		t.Fatalf("card after PIN: %s", s)
	}
	if r := jv.do(t, "GET", accts+"acct-1/card-orders", nil, nil); !strings.Contains(r.body, `"status":"RECEIVED"`) || !strings.Contains(r.body, card) {
		t.Fatalf("order after PIN: %s", r.body)
	}
	// A PIN change keeps the card open and the order received.
	if st, _ := runPINFlow(t, jv, "acct-1", card, "2468"); st != "200" {
		t.Fatalf("change PIN: %s", st)
	}
	if st, body := runPINFlow(t, jv, "acct-2", card, "2468"); st != "404" {
		t.Fatalf("PIN for another account's card: %s %s", st, body)
	}
	// Attempts are budgeted per card: the eighth is the last.
	if st, _ := runPINFlow(t, jv, "acct-1", card, "3579"); st != "200" {
		t.Fatalf("eighth attempt: %s", st)
	}
	if st, body := runPINFlow(t, jv, "acct-1", card, "3579"); st != "429" || !strings.Contains(body, "PIN attempt budget") {
		t.Fatalf("ninth attempt: %s %s", st, body)
	}

	// Every attempt is audited; the order's moves are on the card.
	outcomes := map[string]int{}
	for _, e := range auditTrail(t, jv, card) {
		outcomes[e.Action+" "+strings.SplitN(e.Outcome, ":", 2)[0]]++
	}
	if outcomes["card.pin refused"] != 6 || outcomes["card.pin ok"] != 3 || outcomes["card.issue ok"] != 1 || outcomes["order.ordered ok"] != 1 {
		t.Errorf("audit outcomes %v", outcomes)
	}
	jv.scanForLeaks(t, nil, nil)
	// A PIN is four digits, which occur by chance inside timestamps and
	// ids (CI met "-3579d1ae-" inside a request id's UUID); as a value it
	// would stand alone, not between hex digits.
	for _, pin := range []string{"1357", "2468", "3579"} {
		if regexp.MustCompile(`(^|[^0-9a-fA-F.])` + pin + `([^0-9a-fA-F]|$)`).MatchString(jv.logs.String()) {
			t.Errorf("PIN %s in the log", pin)
		}
	}
	if strings.Contains(jv.logs.String(), `"pin"`) {
		t.Error("a pin field in the log")
	}
}

func clone(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// orderPhysicalCard orders a card for account and has the sandbox produce
// it, returning the order and the card.
func orderPhysicalCard(t *testing.T, jv *jikoVault, account string) (string, string) {
	t.Helper()
	r := jv.post(t, jv.base+"/api/v1/jiko-accounts/"+account+"/card-orders", map[string]any{"name_on_card": "ADA LOVELACE",
		"shipping_address": map[string]any{"street_address": "1 Main St", "city": "Springfield", "postal_code": "62701", "state": "IL", "country": "US"}}, nil)
	var o orderView
	json.Unmarshal([]byte(r.body), &o)
	gen := jv.post(t, jv.base+"/api/v1/sandbox/generate-card", map[string]string{"card_order_id": o.CardOrderID}, nil)
	json.Unmarshal([]byte(gen.body), &o)
	if gen.status != 202 || o.CardID == nil {
		t.Fatalf("generate card: %d %s", gen.status, gen.body)
	}
	return o.CardOrderID, *o.CardID
}

// debianPython is Debian's python3, the one with python3-jwcrypto.
const debianPython = "/usr/bin/python3"

// runSolarisPIN runs solaris_pin.py, a device binding and one PIN update
// request per case, and returns each answer's status and body.
func runSolarisPIN(t *testing.T, jv *jikoVault, person, card string, cases []map[string]any) [][2]any {
	t.Helper()
	testenv.Require(t, "Debian python3 with jwcrypto", exec.Command(debianPython, "-c", "import jwcrypto, cryptography").Run())
	c, _ := json.Marshal(cases)
	script, _ := filepath.Abs("testdata/solaris_pin.py")
	cmd := exec.Command(debianPython, script, jv.base, person, card, string(c))
	cmd.Env = append(os.Environ(), "TOKEN="+jv.token)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("solaris_pin.py: %v\n%s", err, out)
	}
	var results [][2]any
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("client output %s", out)
	}
	return results
}

func TestSolarisPINUpdateWithJWCrypto(t *testing.T) {
	jv := newServedVault(t, pinScopes, envPINPerCard+"=20")
	orderID, card := orderPhysicalCard(t, jv, "person-1")

	cases := []map[string]any{
		{"pin": "1234"},                      // a run
		{"pin": "7771"},                      // a digit three times
		{"pin": "12a4"},                      // not digits
		{"pin": "24680"},                     // five digits
		{"pin": "2468", "tamper": true},      // ciphertext changed: the tag fails
		{"pin": "2468", "kid": "set-pin-v9"}, // a key that was never published
		{"pin": "2468"},                      // good
	}
	results := runSolarisPIN(t, jv, "person-1", card, cases)
	refusal := strip(results[0][1].(string))
	for i := 0; i < 5; i++ {
		if results[i][0].(float64) != 400 || strip(results[i][1].(string)) != refusal || !strings.Contains(refusal, `"field":"encrypted_pin"`) {
			t.Errorf("case %v: %v %s, want the one PIN refusal %s", cases[i], results[i][0], results[i][1], refusal)
		}
	}
	if results[5][0].(float64) != 400 || !strings.Contains(results[5][1].(string), `"field":"key_id"`) {
		t.Errorf("unpublished kid: %v %s", results[5][0], results[5][1])
	}
	if results[6][0].(float64) != 204 {
		t.Fatalf("good PIN: %v %s", results[6][0], results[6][1])
	}
	if s := jv.do(t, "GET", jv.base+"/api/v1/jiko-accounts/person-1/cards/"+card+"/status", nil, nil).body; !strings.Contains(s, `"status":"OPEN"`) {
		t.Fatalf("card after Solaris PIN: %s", s)
	}
	if r := jv.do(t, "GET", jv.base+"/api/v1/jiko-accounts/person-1/card-orders/"+orderID, nil, nil); !strings.Contains(r.body, `"status":"RECEIVED"`) {
		t.Fatalf("order after Solaris PIN: %s", r.body)
	}
}
