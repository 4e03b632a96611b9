package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cardvault/cardvault/ceremonyplan"
)

// ceremonyReplayCmd is `cardvault ceremony replay TRANSCRIPT PLAN`: an
// auditor's offline check that the transcript is what the plan, approved
// by the officers who signed it, produced. It needs neither the token nor
// the database.
type ceremonyReplayCmd struct {
	Transcript  string   `arg:"" type:"existingfile" help:"the ceremony's transcript"`
	Plan        string   `arg:"" type:"existingfile" help:"the plan it ran from"`
	Approval    []string `name:"approval" sep:"none" type:"existingfile" placeholder:"FILE" help:"the officers' signatures over the plan; every approver the transcript names must have one"`
	AuditExport string   `name:"audit-export" type:"existingfile" placeholder:"FILE" help:"an audit export (cardvault audit export) covering the ceremony: its ceremony.plan and ceremony entries must name this plan and transcript (audit verify --file vouches for the export itself)"`
}

// errReplay is wrapped by every mismatch a replay finds.
var errReplay = errors.New("the transcript is not what the plan produced")

func (r *ceremonyReplayCmd) Run(in *invocation) error {
	transcript, err := os.ReadFile(r.Transcript)
	if err != nil {
		return err
	}
	raw, plan, signatures, err := readPlan(r.Plan, r.Approval)
	if err != nil {
		return err
	}
	var export []byte
	if r.AuditExport != "" {
		if export, err = os.ReadFile(r.AuditExport); err != nil {
			return err
		}
	}
	rep, err := ceremonyplan.Replay(transcript, raw, plan, signatures, export)
	if err != nil {
		return err
	}
	if len(rep.Mismatches) > 0 {
		for _, m := range rep.Mismatches {
			fmt.Fprintln(in.stdout, "MISMATCH: "+m)
		}
		return fmt.Errorf("%w: %d mismatch(es)", errReplay, len(rep.Mismatches))
	}
	fmt.Fprintf(in.stdout, "transcript: %s sha256 %s\nplan:       %s sha256 %s\nceremony:   %s on token %s (serial %s)\napproved:   %s\nresult:     %s\n",
		r.Transcript, rep.TranscriptSHA256, r.Plan, plan.SHA256(), plan.Ceremony, rep.TokenLabel, rep.TokenSerial, rep.Approved, rep.Result)
	if rep.AuditChecked {
		fmt.Fprintf(in.stdout, "audit:      %s holds the ceremony.plan and ceremony.%s entries for this plan and transcript\n", r.AuditExport, plan.Ceremony)
	}
	fmt.Fprintln(in.stdout, "replay:     the transcript is what the plan, approved by these officers, produced")
	return nil
}
