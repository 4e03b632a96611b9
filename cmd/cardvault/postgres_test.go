package main

import (
	"strings"
	"testing"

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
