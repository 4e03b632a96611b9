package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSetPINRotationWithGrace rotates the set_pin key with `ceremony
// rotate` while the server runs, and has clients that kept the key they
// fetched before (the guide's openssl flow and a jwcrypto JWE with its kid)
// go on setting PINs: the new key is published at once, the previous one
// is accepted through its grace, and the one before that is refused.
func TestSetPINRotationWithGrace(t *testing.T) {
	jv := newServedVault(t, pinScopes, envPINPerCard+"=50", envKeyRefresh+"=1ms", envDeviceGate+"=off") // one person on both surfaces
	_, card := orderPhysicalCard(t, jv, "person-1")
	keys := map[int]publishedKey{1: fetchSetPINKey(t, jv)}
	if keys[1].kid != "set-pin-v1" {
		t.Fatalf("first published kid %q", keys[1].kid)
	}

	rotate := func(version, graceDays int) {
		t.Helper()
		out, err := jv.run(t, "ceremony", "rotate", "--purpose", "set-pin", "--grace-days", strconv.Itoa(graceDays))
		lastDay := time.Now().UTC().AddDate(0, 0, graceDays).Format(time.DateOnly)
		if err != nil || !strings.Contains(out, "created:  set-pin/v"+strconv.Itoa(version)+"  sha256:") ||
			!strings.Contains(out, "set-pin/v"+strconv.Itoa(version-1)+" are accepted through "+lastDay) ||
			!regexp.MustCompile(`transcript sha256: [0-9a-f]{64}`).MatchString(out) {
			t.Fatalf("rotate to v%d: %v\n%s", version, err, out)
		}
		keys[version] = fetchSetPINKey(t, jv)
		if keys[version].kid != "set-pin-v"+strconv.Itoa(version) || keys[version].pem == keys[version-1].pem {
			t.Fatalf("published after rotation to v%d: kid %q, key changed %v", version, keys[version].kid, keys[version].pem != keys[version-1].pem)
		}
	}
	jiko := func(version int, pin string) string {
		t.Helper()
		st, body := runPINFlowTo(t, jv, keys[version].file, "person-1", card, pin)
		return st + " " + body
	}
	solaris := func(version int, pin string) map[string]any {
		return map[string]any{"pin": pin, "key": keys[version].jwk}
	}

	rotate(2, 3)
	if got := jiko(1, "1357"); got != `200 {"success":true}` {
		t.Errorf("Jiko, key v1 in its grace: %s", got)
	}
	if got := jiko(2, "2468"); got != `200 {"success":true}` {
		t.Errorf("Jiko, key v2: %s", got)
	}
	for i, r := range runSolarisPIN(t, jv, "person-1", card, []map[string]any{solaris(1, "3579"), solaris(2, "1470")}) {
		if r[0].(float64) != 204 {
			t.Errorf("Solaris, key v%d: %v %s", i+1, r[0], r[1])
		}
	}

	rotate(3, 1)
	if got := jiko(1, "1357"); !strings.HasPrefix(got, "422 ") || !strings.Contains(got, `"loc":["body","encrypted_pin"]`) {
		t.Errorf("Jiko, key v1 two rotations back: %s, want the one PIN refusal", got)
	}
	for _, v := range []int{2, 3} {
		if got := jiko(v, "2580"); got != `200 {"success":true}` {
			t.Errorf("Jiko, key v%d: %s", v, got)
		}
	}
	results := runSolarisPIN(t, jv, "person-1", card, []map[string]any{solaris(1, "3579"), solaris(2, "1470"), solaris(3, "3690")})
	if results[0][0].(float64) != 400 || !strings.Contains(results[0][1].(string), `"field":"key_id"`) || !strings.Contains(results[0][1].(string), "set-pin-v3") {
		t.Errorf("Solaris, key v1 two rotations back: %v %s", results[0][0], results[0][1])
	}
	for i, r := range results[1:] {
		if r[0].(float64) != 204 {
			t.Errorf("Solaris, key v%d: %v %s", i+2, r[0], r[1])
		}
	}

	list, err := jv.run(t, "ceremony", "list")
	if err != nil {
		t.Fatal(err)
	}
	// The published halves carry their last day; the active one has none.
	day := func(n int) string { return time.Now().UTC().AddDate(0, 0, n).Format(time.DateOnly) }
	rows := map[string]string{}
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) == 12 && f[4] == "public" {
			rows[f[0]] = f[9]
		}
	}
	if rows["set-pin/v1"] != day(3) || rows["set-pin/v2"] != day(1) || rows["set-pin/v3"] != "-" {
		t.Errorf("end dates %v, want v1 %s, v2 %s, v3 none:\n%s", rows, day(3), day(1), list)
	}
	if out, err := jv.run(t, "ceremony", "rotate", "--purpose", "pek", "--grace-days", "2"); err == nil || !strings.Contains(out, "set-pin only") {
		t.Errorf("grace for a PEK rotation: %v %s", err, out)
	}
}

// publishedKey is the set_pin key as a client keeps it: the PEM of
// /api/v1/public_keys/ in a file, and the JWK of pin_keys/latest.
type publishedKey struct {
	pem, file, kid string
	jwk            map[string]any
}

func fetchSetPINKey(t *testing.T, jv *jikoVault) publishedKey {
	t.Helper()
	var pk publishedKey
	var body struct {
		SetPIN string `json:"set_pin"`
	}
	if r := jv.do(t, "GET", jv.base+"/api/v1/public_keys/", nil, nil); r.status != 200 || json.Unmarshal([]byte(r.body), &body) != nil {
		t.Fatalf("public_keys: %d %s", r.status, r.body)
	}
	pk.pem = body.SetPIN
	pk.file = filepath.Join(t.TempDir(), "set_pin.pub")
	if err := os.WriteFile(pk.file, []byte(pk.pem), 0o644); err != nil {
		t.Fatal(err)
	}
	r := jv.do(t, "GET", jv.base+"/v1/cards/pin_keys/latest", nil, nil)
	if r.status != 200 || json.Unmarshal([]byte(r.body), &pk.jwk) != nil {
		t.Fatalf("pin_keys/latest: %d %s", r.status, r.body)
	}
	pk.kid, _ = pk.jwk["kid"].(string)
	return pk
}

// Issue 28: rewrap started at once after rotate, while a serving replica
// could still be on its view from before the rotation and seal new cards
// under the old version after the rewrap said every record was moved.
// Rewrap now waits until every server can have seen the target versions:
// their records plus two key refresh intervals, and says so.
func TestRewrapWaitsForServersToSeeTheRotation(t *testing.T) {
	v := newVaultEnv(t)
	v.env = append(v.env, envKeyRefresh+"=1s")
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if out, err := v.run(t, "ceremony", "rotate", "--purpose", "card-kek"); err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	out, err := v.run(t, "ceremony", "rewrap")
	if err != nil {
		t.Fatalf("rewrap: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`waiting:  until (\S+), two key refresh intervals \(1s\) after the target versions were recorded \(latest (\S+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rewrap right after rotate did not wait for the servers:\n%s", out)
	}
	until, err1 := time.Parse(time.RFC3339Nano, m[1])
	recorded, err2 := time.Parse(time.RFC3339Nano, m[2])
	if err1 != nil || err2 != nil || !until.Equal(recorded.Add(2*time.Second)) {
		t.Fatalf("waits until %s for versions recorded at %s, want two intervals later", m[1], m[2])
	}
}
