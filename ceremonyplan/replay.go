package ceremonyplan

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cardvault/cardvault/auditchain"
)

// Replayed is what a replay read from a transcript, and every way it
// differs from what the plan, its approvals and the audit trail say.
type Replayed struct {
	TranscriptSHA256        string
	TokenLabel, TokenSerial string
	Approved, Result        string
	Mismatches              []string
	AuditChecked            bool
}

// Replay checks offline that a transcript is what a plan produced: the
// plan's hash, ceremony, operator, reason, token and purpose; every
// approver it names (by key fingerprint) among the signatures that verify
// over the plan, at least MinQuorum of them; a completed result; and,
// given an audit export's bytes, the ceremony.plan entry for the plan and
// the ceremony's entry naming this transcript's hash.
func Replay(transcript, raw []byte, plan *Plan, signatures [][]byte, auditExport []byte) (*Replayed, error) {
	fields := transcriptFields(transcript)
	token := tokenFields(fields["token"])
	sum := sha256.Sum256(transcript)
	r := &Replayed{TranscriptSHA256: hex.EncodeToString(sum[:]), TokenLabel: token["label"], TokenSerial: token["serial"],
		Approved: fields["approved"], Result: fields["result"]}
	want := func(field, got, expected string) {
		if got != expected {
			r.Mismatches = append(r.Mismatches, fmt.Sprintf("%s: the transcript says %q, the plan %q", field, got, expected))
		}
	}
	want("ceremony", fields["cardvault key ceremony"], plan.Ceremony)
	want("plan sha256", lastWord(fields["plan"]), plan.SHA256())
	want("operator", fields["operator"], plan.Operator)
	want("reason", fields["reason"], plan.Reason)
	if plan.Token.Label != "" {
		want("token label", token["label"], plan.Token.Label)
	}
	if plan.Token.Serial != "" {
		want("token serial", token["serial"], plan.Token.Serial)
	}
	if !ProfileMatches(plan.Token.Profile, fields["profile"]) {
		want("token profile", fields["profile"], plan.Token.Profile)
	}
	if p := plan.Parameters.Purpose; p != nil && plan.Ceremony != "retire" {
		want("purpose", strings.Fields(fields["purpose"] + " ")[0], *p)
	}
	if strings.HasPrefix(r.Result, "FAILED") || r.Result == "" {
		r.Mismatches = append(r.Mismatches, "result: the ceremony did not complete ("+r.Result+")")
	}
	signed, err := VerifyOffline(raw, signatures)
	if err != nil {
		return nil, err
	}
	recorded := approverFingerprints(r.Approved)
	for _, fp := range recorded {
		if !slices.ContainsFunc(signed, func(a Approval) bool { return a.Fingerprint == fp }) {
			r.Mismatches = append(r.Mismatches, "approved: the transcript names "+fp+", whose signature over this plan is not among the approvals given")
		}
	}
	if len(recorded) < MinQuorum {
		r.Mismatches = append(r.Mismatches, fmt.Sprintf("approved: %d approver(s) recorded; every planned ceremony has at least %d", len(recorded), MinQuorum))
	}
	if auditExport != nil {
		r.AuditChecked = true
		r.Mismatches = append(r.Mismatches, checkExport(auditExport, plan, r.TranscriptSHA256)...)
	}
	return r, nil
}

// checkExport finds the ceremony's entries in an audit export.
func checkExport(export []byte, plan *Plan, transcriptSHA string) []string {
	var planned, ran bool
	for _, line := range bytes.Split(export, []byte("\n")) {
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

// ProfileMatches says whether a token's profile has every setting a plan
// expects. A setting the token has not tried yet on this connection
// ("untried": it learns it when it first makes a key) does not refuse.
func ProfileMatches(expected, reported string) bool {
	has := map[string]string{}
	for _, kv := range strings.Split(reported, ",") {
		k, v, _ := strings.Cut(kv, "=")
		has[k] = v
	}
	for _, kv := range strings.Split(expected, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if got := has[k]; got != v && got != "untried" {
			return false
		}
	}
	return true
}
