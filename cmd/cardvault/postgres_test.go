package main

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// TestServeOnPostgres runs the binary on PostgreSQL: the guide's card flow
// issues and reads a card, and a second server on the same database (a
// replica) reads it too and refuses the first reader's used key.
func TestServeOnPostgres(t *testing.T) {
	dsn := testenv.PostgresDatabase(t)
	v := newVaultEnv(t)
	v.env = append(v.env, envDB+"="+dsn)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", "cards:write", "cards:read", "cards:reveal")
	base, logs := startServer(t, v)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}
	card, err := runGuideFlow(t, jv, base+"/api/v1/jiko-accounts/acct-1/virtual-cards")
	if err != nil {
		t.Fatal(err)
	}
	if len(card["encrypted_pan"]) != 16 || card["card_id"] == "" {
		t.Fatalf("guide flow on PostgreSQL: %v", card)
	}
	replica, replicaLogs := startServer(t, v)
	other := &jikoVault{vaultEnv: v, base: replica, token: token, logs: replicaLogs}
	again, err := runGuideFlow(t, other, replica+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+card["card_id"])
	if err != nil {
		t.Fatalf("replica read: %v", err)
	}
	if again["encrypted_pan"] != card["encrypted_pan"] || again["encrypted_cvv"] != card["encrypted_cvv"] {
		t.Fatal("the replica read different card data")
	}
	r := other.post(t, replica+"/api/v1/jiko-accounts/acct-1/virtual-cards/"+card["card_id"], map[string]string{"public_key": card["public_key"]}, nil)
	if r.status != 409 || !strings.Contains(r.body, "used before") {
		t.Fatalf("the replica accepted a key the first server used: %d %s", r.status, r.body)
	}
}

// TestVerifyPINAcrossReplicasOnPostgres is PIN verification in the
// production shape: two servers on one PostgreSQL database, a zone PIN
// key formed from custodian components, and wrong PINs sent to both
// replicas at once. The try limit holds across them: exactly 3 answers
// are no_match and the rest blocked, and then the right PIN is blocked
// too.
func TestVerifyPINAcrossReplicasOnPostgres(t *testing.T) {
	testenv.RequireCommand(t, "openssl")
	dsn := testenv.PostgresDatabase(t)
	v := newVaultEnv(t)
	v.env = append(v.env, envDB+"="+dsn)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	dir := t.TempDir()
	c1, c2 := randomKey(t), randomKey(t)
	zpk := xorAll(c1, c2)
	out, err := v.run(t, "ceremony", "import-components", "--purpose", "zpk", "--components", "2",
		"--component-file", componentForm(t, dir, "alice", c1, opensslKCV(t, c1)), "--component-file", componentForm(t, dir, "bob", c2, opensslKCV(t, c2)))
	if err != nil || !strings.Contains(out, "combined: zpk/v1  KCV "+opensslKCV(t, zpk)) {
		t.Fatalf("import-components --purpose zpk: %v\n%s", err, out)
	}
	token := v.token(t, "platform", "cards:write", "pin:write", "cards:verify")
	var replicas []*jikoVault
	for range 2 {
		base, logs := startServer(t, v)
		replicas = append(replicas, &jikoVault{vaultEnv: v, base: base, token: token, logs: logs})
	}
	const pan = "4000001234567899"
	card := replicas[0].importCard(t, "acct-1", pan)
	if st, body := runPINFlow(t, replicas[1], "acct-1", card, "2468"); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}
	verify := func(jv *jikoVault, block []byte) string {
		r := jv.post(t, jv.base+"/v1/cards/verify_pin", map[string]any{"card_id": card, "pin_block": hex.EncodeToString(block)}, nil)
		var answer struct{ PIN string }
		if r.status != 200 || json.Unmarshal([]byte(r.body), &answer) != nil {
			t.Errorf("verify_pin: %d %s", r.status, r.body)
		}
		return answer.PIN
	}
	if got := verify(replicas[1], openssltest.Format4PINBlock(t, zpk, "2468", pan)); got != "match" {
		t.Fatalf("the right PIN on the second replica: %q", got)
	}
	wrong := make([][]byte, 8)
	for i := range wrong {
		wrong[i] = openssltest.Format4PINBlock(t, zpk, "1357", pan)
	}
	answers := make([]string, len(wrong))
	var wg sync.WaitGroup
	for i := range wrong {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = verify(replicas[i%2], wrong[i])
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for _, a := range answers {
		count[a]++
	}
	if count["no_match"] != 3 || count["blocked"] != 5 {
		t.Fatalf("8 wrong PINs at once on 2 replicas answered %v, want 3 no_match and 5 blocked", count)
	}
	if got := verify(replicas[0], openssltest.Format4PINBlock(t, zpk, "2468", pan)); got != "blocked" {
		t.Fatalf("the right PIN past the limit: %q", got)
	}
}
