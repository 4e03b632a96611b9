package ceremonyplan

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

const rotatePlan = `cardvault_ceremony_plan: 1
ceremony: rotate
reason: annual rotation, ticket SEC-1
operator: alice
transcript: transcripts/rotate-card-kek.txt
token:
  label: cardvault
parameters:
  purpose: card-kek
  backup: vendor
`

func TestReadAPlan(t *testing.T) {
	byURI, err := Read([]byte(strings.Replace(rotatePlan, "  label: cardvault\n", "  uri: pkcs11:token=cardvault;serial=1a2b\n", 1)))
	if err != nil || byURI.Token.Label != "cardvault" || byURI.Token.Serial != "1a2b" {
		t.Fatalf("a plan naming its token by URI: %v %+v", err, byURI)
	}
	p, err := Read([]byte(rotatePlan))
	if err != nil {
		t.Fatal(err)
	}
	if p.Ceremony != "rotate" || *p.Parameters.Purpose != "card-kek" || len(p.SHA256()) != 64 {
		t.Fatalf("read %+v", p)
	}
	edited, err := Read([]byte(strings.Replace(rotatePlan, "SEC-1", "SEC-2", 1)))
	if err != nil || edited.SHA256() == p.SHA256() {
		t.Fatalf("an edited plan hashes the same: %v", err)
	}
}

// Issue 31: a plan that does not say exactly what runs is refused before
// any token is touched.
func TestPlanRefusals(t *testing.T) {
	for name, c := range map[string]struct{ plan, want string }{
		"unknown key":            {rotatePlan + "extra: 1\n", "field extra not found"},
		"unknown parameter":      {strings.Replace(rotatePlan, "  backup: vendor\n", "  backup: vendor\n  bakup: wrap\n", 1), "field bakup not found"},
		"missing parameter":      {strings.Replace(rotatePlan, "  backup: vendor\n", "", 1), "parameters.backup: required for rotate"},
		"parameter of another":   {rotatePlan + "  batch: 10\n", "parameters.batch: does not apply to rotate"},
		"grace days off set-pin": {rotatePlan + "  grace_days: 7\n", "parameters.grace_days: does not apply to rotate"},
		"set-pin without grace":  {strings.Replace(rotatePlan, "purpose: card-kek", "purpose: set-pin", 1), "parameters.grace_days: required for rotate"},
		"unknown ceremony":       {strings.Replace(rotatePlan, "ceremony: rotate", "ceremony: rotat", 1), `ceremony: "rotat" is not one of`},
		"no token":               {strings.Replace(rotatePlan, "  label: cardvault\n", "", 1), "token: name its label, its serial or both"},
		"no operator":            {strings.Replace(rotatePlan, "operator: alice\n", "", 1), "operator: required"},
		"uri and label":          {strings.Replace(rotatePlan, "  label: cardvault\n", "  label: cardvault\n  uri: pkcs11:token=cardvault\n", 1), "token: a uri, or a label and serial, not both"},
		"not a uri":              {strings.Replace(rotatePlan, "  label: cardvault\n", "  uri: token=cardvault\n", 1), "token.uri: PKCS#11 URI"},
		"a later format":         {strings.Replace(rotatePlan, "plan: 1", "plan: 2", 1), "cardvault_ceremony_plan: want 1, got 2"},
		"two documents":          {rotatePlan + "---\nceremony: init\n", "want one YAML document"},
		"key twice":              {rotatePlan + "operator: mallory\n", `mapping key "operator" already defined`},
		"roster on a rotation":   {rotatePlan + "roster:\n  quorum: 2\n", "roster: only a roster ceremony or the first init"},
	} {
		_, err := Read([]byte(c.plan))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
}

type officer struct {
	Member
	signer ssh.Signer
}

func newOfficer(t *testing.T, name string) officer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return officer{Member{Name: name, Key: signer.PublicKey(), Fingerprint: ssh.FingerprintSHA256(signer.PublicKey())}, signer}
}

func (o officer) sign(t *testing.T, plan, namespace string) []byte {
	t.Helper()
	sig, err := sshsig.Sign(strings.NewReader(plan), o.signer, sshsig.HashSHA512, namespace)
	if err != nil {
		t.Fatal(err)
	}
	return sshsig.Armor(sig)
}

// Issue 31: dual control is the officers' signatures over the plan, and
// each way around it is refused.
func TestApprovalRefusals(t *testing.T) {
	alice, bob, carol, mallory := newOfficer(t, "alice"), newOfficer(t, "bob"), newOfficer(t, "carol"), newOfficer(t, "mallory")
	roster := []Member{alice.Member, bob.Member, carol.Member}
	plan := rotatePlan
	other := strings.Replace(rotatePlan, "purpose: card-kek", "purpose: pan-hmac", 1)
	approvals, err := Verify([]byte(plan), [][]byte{alice.sign(t, plan, Namespace), carol.sign(t, plan, Namespace)}, roster, 2)
	if err != nil || len(approvals) != 2 || approvals[1].Officer != "carol" || approvals[1].Fingerprint != carol.Fingerprint || approvals[0].Signature == approvals[1].Signature {
		t.Fatalf("two officers' approvals: %v %+v", err, approvals)
	}
	for name, c := range map[string]struct {
		sigs [][]byte
		want string
	}{
		"one where two are needed": {[][]byte{alice.sign(t, plan, Namespace)}, "1 approval(s) from distinct officers; this ceremony needs 2"},
		"the same officer twice":   {[][]byte{alice.sign(t, plan, Namespace), alice.sign(t, plan, Namespace)}, "approval 2: alice approved already (approval 1)"},
		"an officer not on it":     {[][]byte{alice.sign(t, plan, Namespace), mallory.sign(t, plan, Namespace)}, "approval 2: signed by " + mallory.Fingerprint + ", which is no officer"},
		"over a different plan":    {[][]byte{alice.sign(t, plan, Namespace), bob.sign(t, other, Namespace)}, "approval 2: bob's signature does not verify over this plan"},
		"another namespace":        {[][]byte{alice.sign(t, plan, Namespace), bob.sign(t, plan, "git")}, `approval 2: bob signed for namespace "git"`},
		"not a signature":          {[][]byte{alice.sign(t, plan, Namespace), []byte("approved -- bob")}, "approval 2: not an SSH signature"},
	} {
		_, err := Verify([]byte(plan), c.sigs, roster, 2)
		if !errors.Is(err, ErrApproval) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
	edited := strings.Replace(plan, "SEC-1", "SEC-1 and more", 1)
	if _, err := Verify([]byte(edited), [][]byte{alice.sign(t, plan, Namespace), bob.sign(t, plan, Namespace)}, roster, 2); err == nil {
		t.Error("a plan edited after its approvals ran")
	}
	if _, err := Verify([]byte(plan), [][]byte{alice.sign(t, plan, Namespace), bob.sign(t, plan, Namespace)}, roster, 3); err == nil {
		t.Error("two approvals met a quorum of three")
	}
}

func TestRosterRefusals(t *testing.T) {
	alice, bob := newOfficer(t, "alice"), newOfficer(t, "bob")
	line := func(o officer) string { return string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(o.Key))) }
	weak, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	weakKey, err := ssh.NewPublicKey(&weak.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		r    Roster
		want string
	}{
		"quorum of one":        {Roster{1, []Officer{{"alice", line(alice)}, {"bob", line(bob)}}}, "quorum: want 2 to the 2 officers listed, got 1"},
		"quorum beyond them":   {Roster{3, []Officer{{"alice", line(alice)}, {"bob", line(bob)}}}, "got 3"},
		"one key twice":        {Roster{2, []Officer{{"alice", line(alice)}, {"bob", line(alice)}}}, "the same name or key as alice"},
		"not a key":            {Roster{2, []Officer{{"alice", "AAAA"}, {"bob", line(bob)}}}, "officers[0] (alice): key"},
		"RSA of 2048 bits":     {Roster{2, []Officer{{"alice", line(alice)}, {"bob", string(ssh.MarshalAuthorizedKey(weakKey))}}}, "RSA key of 2048 bits is too short"},
		"an officer unnamed":   {Roster{2, []Officer{{"alice", line(alice)}, {" ", line(bob)}}}, "officers[1]: name required"},
		"the same name twice":  {Roster{2, []Officer{{"alice", line(alice)}, {"alice", line(bob)}}}, "the same name or key as alice"},
		"no officers, quorum2": {Roster{2, nil}, "quorum: want 2 to the 0 officers listed"},
	} {
		if _, err := c.r.Parse(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, c.want)
		}
	}
	if m, err := (&Roster{2, []Officer{{"alice", line(alice)}, {"bob", line(bob)}}}).Parse(); err != nil || len(m) != 2 || m[1].Fingerprint != bob.Fingerprint {
		t.Fatalf("a good roster: %v %v", err, m)
	}
}

func sshAuthorizedKey(o officer) []byte { return ssh.MarshalAuthorizedKey(o.Key) }

func TestProfileMatches(t *testing.T) {
	reported := "gcm-iv=honoured,raw-rsa=yes,oaep-sha256=untried,kcv=cmac"
	for expected, want := range map[string]bool{
		"":                             true,
		"kcv=cmac":                     true,
		"gcm-iv=honoured, raw-rsa=yes": true,
		"oaep-sha256=token":            true, // not tried yet on this connection
		"kcv=ecb":                      false,
		"gcm-iv=refused,kcv=cmac":      false,
		"wrap=pad":                     false, // a setting the token does not report
	} {
		if got := ProfileMatches(expected, reported); got != want {
			t.Errorf("ProfileMatches(%q) = %v, want %v", expected, got, want)
		}
	}
}
