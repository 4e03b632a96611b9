package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/cardvault/cardvault/auditchain"
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
	transcriptBytes, err := os.ReadFile(r.Transcript)
	if err != nil {
		return err
	}
	raw, plan, signatures, err := readPlan(r.Plan, r.Approval)
	if err != nil {
		return err
	}
	fields := transcriptFields(transcriptBytes)
	var problems []string
	want := func(field, got, expected string) {
		if got != expected {
			problems = append(problems, fmt.Sprintf("%s: the transcript says %q, the plan %q", field, got, expected))
		}
	}
	want("ceremony", fields["cardvault key ceremony"], plan.Ceremony)
	want("plan sha256", lastWord(fields["plan"]), plan.SHA256())
	want("operator", fields["operator"], plan.Operator)
	want("reason", fields["reason"], plan.Reason)
	token := tokenFields(fields["token"])
	if plan.Token.Label != "" {
		want("token label", token["label"], plan.Token.Label)
	}
	if plan.Token.Serial != "" {
		want("token serial", token["serial"], plan.Token.Serial)
	}
	if !profileMatches(plan.Token.Profile, fields["profile"]) {
		want("token profile", fields["profile"], plan.Token.Profile)
	}
	if p := plan.Parameters.Purpose; p != nil && plan.Ceremony != "retire" {
		want("purpose", strings.Fields(fields["purpose"] + " ")[0], *p)
	}
	if strings.HasPrefix(fields["result"], "FAILED") || fields["result"] == "" {
		problems = append(problems, "result: the ceremony did not complete ("+fields["result"]+")")
	}
	signed, err := ceremonyplan.VerifyOffline(raw, signatures)
	if err != nil {
		return err
	}
	var signers []string
	for _, a := range signed {
		signers = append(signers, a.Fingerprint)
	}
	recorded := approverFingerprints(fields["approved"])
	for _, fp := range recorded {
		if !slices.Contains(signers, fp) {
			problems = append(problems, "approved: the transcript names "+fp+", whose signature over this plan is not among the approvals given")
		}
	}
	if len(recorded) < ceremonyplan.MinQuorum {
		problems = append(problems, fmt.Sprintf("approved: %d approver(s) recorded; every planned ceremony has at least %d", len(recorded), ceremonyplan.MinQuorum))
	}
	sum := sha256.Sum256(transcriptBytes)
	transcriptSHA := hex.EncodeToString(sum[:])
	if r.AuditExport != "" {
		problems = append(problems, r.checkExport(plan, transcriptSHA)...)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(in.stdout, "MISMATCH: "+p)
		}
		return fmt.Errorf("%w: %d mismatch(es)", errReplay, len(problems))
	}
	fmt.Fprintf(in.stdout, "transcript: %s sha256 %s\nplan:       %s sha256 %s\nceremony:   %s on token %s (serial %s)\napproved:   %s\nresult:     %s\n",
		r.Transcript, transcriptSHA, r.Plan, plan.SHA256(), plan.Ceremony, token["label"], token["serial"], fields["approved"], fields["result"])
	if r.AuditExport != "" {
		fmt.Fprintf(in.stdout, "audit:      %s holds the ceremony.plan and ceremony.%s entries for this plan and transcript\n", r.AuditExport, plan.Ceremony)
	}
	fmt.Fprintln(in.stdout, "replay:     the transcript is what the plan, approved by these officers, produced")
	return nil
}

// checkExport finds the ceremony's entries in an audit export.
func (r *ceremonyReplayCmd) checkExport(plan *ceremonyplan.Plan, transcriptSHA string) []string {
	b, err := os.ReadFile(r.AuditExport)
	if err != nil {
		return []string{err.Error()}
	}
	var planned, ran bool
	for _, line := range bytes.Split(b, []byte("\n")) {
		var e auditchain.Line
		var detail map[string]string
		if json.Unmarshal(line, &e) != nil || json.Unmarshal([]byte(e.Detail), &detail) != nil || detail["plan_sha256"] != plan.SHA256() {
			continue
		}
		planned = planned || e.Action == "ceremony.plan"
		ran = ran || (e.Action == "ceremony."+plan.Ceremony && detail["transcript_sha256"] == transcriptSHA)
	}
	var problems []string
	if !planned {
		problems = append(problems, "audit export: no ceremony.plan entry for this plan")
	}
	if !ran {
		problems = append(problems, "audit export: no ceremony."+plan.Ceremony+" entry naming this plan and this transcript's sha256")
	}
	return problems
}

// transcriptFields are a transcript's "name: value" lines, first of each
// (the result, last).
func transcriptFields(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.HasPrefix(name, " ") {
			continue
		}
		if _, seen := out[name]; !seen || name == "result" {
			out[name] = strings.TrimSpace(value)
		}
	}
	return out
}

// tokenLine is a transcript's token line (newTranscript's): labels and
// models may hold spaces.
var tokenLine = regexp.MustCompile(`^label=(.*) serial=(\S*) model=(.*) manufacturer=(.*)$`)

// tokenFields splits a transcript's "label=… serial=…" token line.
func tokenFields(line string) map[string]string {
	m := tokenLine.FindStringSubmatch(line)
	if m == nil {
		return map[string]string{}
	}
	return map[string]string{"label": m[1], "serial": m[2], "model": m[3], "manufacturer": m[4]}
}

// approverFingerprints are the SHA256:… fingerprints an "approved:" line names.
func approverFingerprints(line string) []string {
	var out []string
	for _, f := range strings.Fields(strings.ReplaceAll(line, ",", " ")) {
		if strings.HasPrefix(f, "SHA256:") {
			out = append(out, f)
		}
	}
	return out
}

func lastWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}
