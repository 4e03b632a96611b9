package ceremonyplan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Replay holds a transcript to its plan, its signatures and the audit
// trail, offline; each kind of difference is named.
func TestReplay(t *testing.T) {
	alice, bob, carol := newOfficer(t, "alice"), newOfficer(t, "bob"), newOfficer(t, "carol")
	plan, err := Read([]byte(rotatePlan))
	if err != nil {
		t.Fatal(err)
	}
	sigs := [][]byte{alice.sign(t, rotatePlan, Namespace), bob.sign(t, rotatePlan, Namespace)}
	transcript := fmt.Sprintf(`cardvault key ceremony: rotate
time:     2026-12-04T08:00:00Z
operator: alice
token:    label=cardvault serial=1a2b model=SoftHSM v2 manufacturer=SoftHSM project
profile:  kcv=cmac
plan:     rotate.yaml sha256 %s
reason:   annual rotation, ticket SEC-1
approved: alice %s, bob %s
purpose:  card-kek (AES)
created:  card-kek/v2  KCV 1A2B3C (AES-CMAC)  verified, recorded, active

result: card-kek/v2 active
`, plan.SHA256(), alice.Fingerprint, bob.Fingerprint)
	sum := sha256.Sum256([]byte(transcript))
	entry := func(action string, detail map[string]string) string {
		d, _ := json.Marshal(detail)
		line, _ := json.Marshal(map[string]string{"type": "entry", "action": action, "detail": string(d)})
		return string(line) + "\n"
	}
	export := entry("ceremony.plan", map[string]string{"plan_sha256": plan.SHA256()}) +
		entry("ceremony.rotate", map[string]string{"plan_sha256": plan.SHA256(), "transcript_sha256": hex.EncodeToString(sum[:])})
	rep, err := Replay([]byte(transcript), []byte(rotatePlan), plan, sigs, []byte(export))
	if err != nil || len(rep.Mismatches) != 0 || rep.TokenSerial != "1a2b" || rep.Result != "card-kek/v2 active" {
		t.Fatalf("a faithful transcript: %v %+v", err, rep)
	}
	for name, c := range map[string]struct {
		transcript string
		sigs       [][]byte
		export     string
		want       string
	}{
		"another reason":        {strings.Replace(transcript, "SEC-1", "SEC-9", 1), sigs, "", `reason: the transcript says "annual rotation, ticket SEC-9"`},
		"another purpose":       {strings.Replace(transcript, "purpose:  card-kek", "purpose:  pek", 1), sigs, "", `purpose: the transcript says "pek"`},
		"a failed ceremony":     {strings.Replace(transcript, "result: card-kek/v2 active", "result: FAILED: the token said no", 1), sigs, "", "result: the ceremony did not complete"},
		"a signature missing":   {transcript, sigs[:1], "", "the transcript names " + bob.Fingerprint},
		"an approver added":     {strings.Replace(transcript, ", bob ", ", carol "+carol.Fingerprint+" bob ", 1), sigs, "", "the transcript names " + carol.Fingerprint},
		"one approver recorded": {strings.Replace(transcript, ", bob "+bob.Fingerprint, "", 1), sigs, "", "approved: 1 approver(s) recorded"},
		"no ceremony entry":     {transcript, sigs, entry("ceremony.plan", map[string]string{"plan_sha256": plan.SHA256()}), "no ceremony.rotate entry naming this plan"},
		"another transcript":    {strings.Replace(transcript, "08:00:00", "08:00:01", 1), sigs, export, "no ceremony.rotate entry naming this plan"},
	} {
		var exp []byte
		if c.export != "" {
			exp = []byte(c.export)
		}
		rep, err := Replay([]byte(c.transcript), []byte(rotatePlan), plan, c.sigs, exp)
		if err != nil || !strings.Contains(strings.Join(rep.Mismatches, "\n"), c.want) {
			t.Errorf("%s: %v, mismatches %q, want %q", name, err, rep.Mismatches, c.want)
		}
	}
}
