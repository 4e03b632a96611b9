package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Roster is the officers in force and how many must approve a plan.
type Roster struct {
	Version  int
	Quorum   int
	Officers []Officer
}

// Officer is an approver on a roster.
type Officer struct {
	Name, PublicKey, Fingerprint string
}

// PlanApproval is a verified signature over a plan.
type PlanApproval struct {
	Officer, Fingerprint string
	Signature            string // SHA-256 of the signature's wire form
}

// PlanClaim is a ceremony plan about to run: its hash, its approvals and,
// for a roster ceremony (or the first init), the roster it fixes.
type PlanClaim struct {
	SHA256    string
	Ceremony  string
	At        time.Time
	Approvals []PlanApproval
	Roster    *Roster // Version is set by ClaimPlan
	// Operator is the audit entry's actor.
	Operator string
}

// ErrNoRoster is CurrentRoster's answer before any roster was fixed.
var ErrNoRoster = errors.New("no officer roster yet")

// CurrentRoster is the roster in force.
func (s *Store) CurrentRoster(ctx context.Context) (*Roster, error) {
	var r Roster
	err := s.db.QueryRowContext(ctx, `SELECT version, quorum FROM rosters ORDER BY version DESC LIMIT 1`).Scan(&r.Version, &r.Quorum)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoRoster
	}
	if err != nil {
		return nil, s.fail(err)
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT name, public_key, fingerprint FROM officers WHERE roster = ? ORDER BY name`), r.Version)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var o Officer
		if err := rows.Scan(&o.Name, &o.PublicKey, &o.Fingerprint); err != nil {
			return nil, s.fail(err)
		}
		r.Officers = append(r.Officers, o)
	}
	return &r, s.fail(rows.Err())
}

// ClaimPlan records, in one transaction, that a plan runs now with these
// approvals, and the roster it fixes; the audit chain gets a
// ceremony.plan entry (and ceremony.roster for a new roster). A plan
// that ran before, or a signature that approved before, is refused, and
// nothing is recorded. The roster a new one replaces must be the one
// the approvals were checked against: fixedOn is its version, 0 for none.
func (s *Store) ClaimPlan(ctx context.Context, c PlanClaim, fixedOn int) error {
	return s.inTx(ctx, func(tx *txn) error {
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM rosters`).Scan(&current); err != nil {
			return err
		}
		if current != fixedOn {
			return vault.Conflict("roster", fmt.Sprintf("the roster changed (now version %d) since the approvals were checked against version %d", current, fixedOn))
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO ceremony_plans (plan_sha256, ceremony, claimed_at) VALUES (?, ?, ?)`), c.SHA256, c.Ceremony, micros(c.At))
		if s.d.isUnique(err) {
			return vault.Conflict("plan", "this plan ran before (sha256 "+c.SHA256+"); a ceremony runs from a new plan, newly approved")
		}
		if err != nil {
			return err
		}
		var approvers []string
		for _, a := range c.Approvals {
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO ceremony_approvals (signature_sha256, plan_sha256, officer, fingerprint) VALUES (?, ?, ?, ?)`),
				a.Signature, c.SHA256, a.Officer, a.Fingerprint)
			if s.d.isUnique(err) {
				return vault.Conflict("approval", a.Officer+"'s signature approved a ceremony before; each approval counts once")
			}
			if err != nil {
				return err
			}
			approvers = append(approvers, a.Officer+" "+a.Fingerprint)
		}
		detail := map[string]string{"plan_sha256": c.SHA256, "ceremony": c.Ceremony, "approvers": strings.Join(approvers, ", ")}
		if err := s.insertAudit(ctx, tx, vault.AuditEntry{At: c.At, Actor: c.Operator, Action: "ceremony.plan", Outcome: "ok", Detail: detail}); err != nil {
			return err
		}
		if c.Roster == nil {
			return nil
		}
		c.Roster.Version = current + 1
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO rosters (version, quorum, plan_sha256, created_at) VALUES (?, ?, ?, ?)`),
			c.Roster.Version, c.Roster.Quorum, c.SHA256, micros(c.At)); err != nil {
			return err
		}
		var officers []string
		for _, o := range c.Roster.Officers {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO officers (roster, name, public_key, fingerprint) VALUES (?, ?, ?, ?)`),
				c.Roster.Version, o.Name, o.PublicKey, o.Fingerprint); err != nil {
				return err
			}
			officers = append(officers, o.Name+" "+o.Fingerprint)
		}
		return s.insertAudit(ctx, tx, vault.AuditEntry{At: c.At, Actor: c.Operator, Action: "ceremony.roster", Outcome: "ok", Detail: map[string]string{
			"plan_sha256": c.SHA256, "roster_version": fmt.Sprint(c.Roster.Version), "quorum": fmt.Sprint(c.Roster.Quorum), "officers": strings.Join(officers, ", "),
		}})
	})
}

// PlanRan says whether a plan was claimed before (ClaimPlan refuses it
// again in any case; this lets a run say so before it opens the token).
func (s *Store) PlanRan(ctx context.Context, sha256 string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM ceremony_plans WHERE plan_sha256 = ?`), sha256).Scan(&n)
	return n > 0, s.fail(err)
}
