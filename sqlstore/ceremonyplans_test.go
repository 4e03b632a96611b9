package sqlstore

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Issue 31: a plan runs once and a signature approves once, on both
// engines; a roster is fixed against the roster the approvals were
// checked on, and the chain records both.
func TestPlansAndApprovalsAreNeverReplayed(t *testing.T) {
	for db, database := range auditDatabases() {
		t.Run(db, func(t *testing.T) {
			ctx := context.Background()
			s := database(t)()
			if _, err := s.CurrentRoster(ctx); err != ErrNoRoster {
				t.Fatalf("a new vault's roster: %v", err)
			}
			alice, bob := PlanApproval{"alice", "SHA256:a", "sig-a1"}, PlanApproval{"bob", "SHA256:b", "sig-b1"}
			first := PlanClaim{SHA256: "plan-1", Ceremony: "init", At: time.Now(), Operator: "alice", Approvals: []PlanApproval{alice, bob},
				Roster: &Roster{Quorum: 2, Officers: []Officer{{"alice", "ssh-ed25519 A", "SHA256:a"}, {"bob", "ssh-ed25519 B", "SHA256:b"}}}}
			if err := s.ClaimPlan(ctx, first, 0); err != nil {
				t.Fatal(err)
			}
			r, err := s.CurrentRoster(ctx)
			if err != nil || r.Version != 1 || r.Quorum != 2 || len(r.Officers) != 2 || r.Officers[1].Fingerprint != "SHA256:b" {
				t.Fatalf("roster after the first plan: %v %+v", err, r)
			}
			for name, c := range map[string]struct {
				claim   PlanClaim
				fixedOn int
				want    string
			}{
				"the same plan again":          {PlanClaim{SHA256: "plan-1", Ceremony: "init", At: time.Now(), Approvals: []PlanApproval{{"alice", "SHA256:a", "sig-a2"}, {"bob", "SHA256:b", "sig-b2"}}}, 1, "this plan ran before"},
				"a signature used before":      {PlanClaim{SHA256: "plan-2", Ceremony: "rotate", At: time.Now(), Approvals: []PlanApproval{{"alice", "SHA256:a", "sig-a2"}, bob}}, 1, "bob's signature approved a ceremony before"},
				"approvals on an older roster": {PlanClaim{SHA256: "plan-3", Ceremony: "rotate", At: time.Now(), Approvals: []PlanApproval{{"alice", "SHA256:a", "sig-a3"}, {"bob", "SHA256:b", "sig-b3"}}}, 0, "the roster changed (now version 1)"},
			} {
				if err := s.ClaimPlan(ctx, c.claim, c.fixedOn); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: got %v, want %q", name, err, c.want)
				}
			}
			// A refused claim records nothing: its fresh signature is still unused.
			if err := s.ClaimPlan(ctx, PlanClaim{SHA256: "plan-2", Ceremony: "rotate", At: time.Now(), Approvals: []PlanApproval{{"alice", "SHA256:a", "sig-a2"}, {"bob", "SHA256:b", "sig-b2"}}}, 1); err != nil {
				t.Fatalf("a fresh plan with fresh signatures after refusals: %v", err)
			}
			rep, err := s.VerifyAudit(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Entries != 3 { // plan-1's plan and roster entries, plan-2's plan entry
				t.Errorf("audit entries: %d, want 3", rep.Entries)
			}
		})
	}
}
