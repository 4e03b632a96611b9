package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/ceremonyplan"
	"github.com/cardvault/cardvault/internal/testsupport/openssltest"
	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// officers are SSH keys made by ssh-keygen, as security staff have them.
type officers struct {
	dir  string
	keys map[string]string // name → public key line
}

func newOfficers(t *testing.T, names ...string) *officers {
	t.Helper()
	testenv.RequireCommand(t, "ssh-keygen")
	o := &officers{dir: t.TempDir(), keys: map[string]string{}}
	for _, name := range names {
		key := filepath.Join(o.dir, name)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@security", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		o.keys[name] = strings.TrimSpace(string(pub))
	}
	return o
}

// sign is an officer's approval of a plan, made as docs/ceremonies.md
// says: ssh-keygen -Y sign -n cardvault-ceremony.
func (o *officers) sign(t *testing.T, name, plan string) string {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-Y", "sign", "-n", "cardvault-ceremony", "-f", filepath.Join(o.dir, name), plan).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v\n%s", err, out)
	}
	sig := plan + "." + name + ".sig"
	if err := os.Rename(plan+".sig", sig); err != nil {
		t.Fatal(err)
	}
	return sig
}

// plan fills an example plan's @…@ values and writes it to dir.
func (o *officers) plan(t *testing.T, dir, example string, values map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("../../examples/ceremonies", example))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for name, key := range o.keys {
		text = strings.ReplaceAll(text, "@"+strings.ToUpper(name)+"_KEY@", key)
	}
	for k, v := range values {
		text = strings.ReplaceAll(text, "@"+k+"@", v)
	}
	if strings.Contains(text, "\"@") {
		t.Fatalf("%s: a value is left to fill:\n%s", example, text)
	}
	path := filepath.Join(dir, example)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func approvals(sigs ...string) []string {
	var out []string
	for _, s := range sigs {
		out = append(out, "--approval", s)
	}
	return out
}

// Issue 31: the ceremony sequence run from examples/ceremonies' plans,
// each approved by two officers with ssh-keygen, each transcript checked
// by `ceremony replay`, and every way around dual control refused.
func TestPlannedCeremonies(t *testing.T) {
	v := newVaultEnv(t)
	o := newOfficers(t, "alice", "bob", "carol", "dave", "mallory")
	dir := t.TempDir()
	backup := "wrap"
	if os.Getenv("CARDVAULT_TEST_PKCS11") == "nss" {
		backup = "vendor" // NSS softokn does not enforce trusted wrapping: wrap is refused there
	}
	values := map[string]string{"TOKEN_LABEL": tokenLabel(v), "TRANSCRIPTS": filepath.Join(dir, "transcripts"), "BACKUP": backup, "BACKUP_FILE": filepath.Join(dir, "backup.json")}
	run := func(plan string, sigs ...string) (string, error) {
		return v.run(t, append([]string{"ceremony", "run", plan}, approvals(sigs...)...)...)
	}
	replay := func(transcript, plan string, sigs ...string) (string, error) {
		return v.run(t, append([]string{"ceremony", "replay", transcript, plan}, approvals(sigs...)...)...)
	}

	initPlan := o.plan(t, dir, "init.yaml", values)
	out, err := v.run(t, "ceremony", "run", "--check", initPlan)
	if err != nil || !strings.Contains(out, "roster:     quorum 2 of 3") || !strings.Contains(out, "ssh-keygen -Y sign -n cardvault-ceremony") {
		t.Fatalf("--check: %v\n%s", err, out)
	}
	alice, bob, mallory := o.sign(t, "alice", initPlan), o.sign(t, "bob", initPlan), o.sign(t, "mallory", initPlan)
	for name, c := range map[string]struct {
		sigs []string
		want string
	}{
		"one approval where two are needed": {[]string{alice}, "1 approval(s) from distinct officers; this ceremony needs 2"},
		"the same officer twice":            {[]string{alice, alice}, "approval 2: alice approved already"},
		"an officer not on the roster":      {[]string{alice, mallory}, "which is no officer on the roster"},
	} {
		if out, err := run(initPlan, c.sigs...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("init, %s: %v\n%s", name, err, out)
		}
	}
	if list, _ := v.run(t, "ceremony", "list"); strings.Contains(list, "card-kek/v1") {
		t.Fatalf("a refused plan made keys:\n%s", list)
	}
	out, err = run(initPlan, alice, bob)
	if err != nil || !strings.Contains(out, "result: created") || !strings.Contains(out, "approved: alice SHA256:") {
		t.Fatalf("init from its plan: %v\n%s", err, out)
	}
	if out, err := v.run(t, "ceremony", "rotate", "--purpose", "pek"); err == nil || !strings.Contains(out, "this vault has an officer roster (version 1, quorum 2): its ceremonies run from approved plans") {
		t.Errorf("the flag form on a vault with a roster: %v\n%s", err, out)
	}
	initTranscript := filepath.Join(dir, "transcripts", "init.txt")
	if out, err := replay(initTranscript, initPlan, alice, bob); err != nil || !strings.Contains(out, "replay:     the transcript is what the plan") {
		t.Fatalf("replay of init: %v\n%s", err, out)
	}
	if out, err := run(initPlan, alice, bob); err == nil || !strings.Contains(out, "this plan ran before") {
		t.Fatalf("the init plan ran twice: %v\n%s", err, out)
	}

	// A transcript edited after the run, or replayed against another
	// plan or without its approvers' signatures, does not replay.
	edited := filepath.Join(dir, "edited.txt")
	raw, _ := os.ReadFile(initTranscript)
	os.WriteFile(edited, []byte(strings.Replace(string(raw), "operator: alice", "operator: mallory", 1)), 0o644)
	if out, err := replay(edited, initPlan, alice, bob); err == nil || !strings.Contains(out, `MISMATCH: operator: the transcript says "mallory"`) {
		t.Errorf("replay of an edited transcript: %v\n%s", err, out)
	}
	if out, err := replay(initTranscript, initPlan, alice); err == nil || !strings.Contains(out, "whose signature over this plan is not among the approvals") {
		t.Errorf("replay without bob's signature: %v\n%s", err, out)
	}

	rotatePlan := o.plan(t, dir, "rotate.yaml", values)
	rewrapPlan := o.plan(t, dir, "rewrap.yaml", values)
	bobOnRewrap := o.sign(t, "bob", rewrapPlan)
	os.Rename(bobOnRewrap, rotatePlan+".bob-on-rewrap.sig")
	if out, err := run(rotatePlan, o.sign(t, "alice", rotatePlan), rotatePlan+".bob-on-rewrap.sig"); err == nil || !strings.Contains(out, "bob's signature does not verify over this plan") {
		t.Errorf("an approval over a different plan: %v\n%s", err, out)
	}
	// The plan edited after its approvals.
	aliceRotate, carolRotate := o.sign(t, "alice", rotatePlan), o.sign(t, "carol", rotatePlan)
	original, _ := os.ReadFile(rotatePlan)
	os.WriteFile(rotatePlan, []byte(strings.Replace(string(original), "purpose: card-kek", "purpose: pan-hmac", 1)), 0o644)
	if out, err := run(rotatePlan, aliceRotate, carolRotate); err == nil || !strings.Contains(out, "does not verify over this plan") {
		t.Errorf("a plan edited after approval: %v\n%s", err, out)
	}
	// A token that is not the plan's: refused, and the plan is not spent.
	os.WriteFile(rotatePlan, []byte(strings.Replace(string(original), "label: \""+tokenLabel(v)+"\"", "label: \"standby-hsm\"", 1)), 0o644)
	other := rotatePlan + ".other"
	os.Rename(rotatePlan, other)
	otherAlice, otherCarol := o.sign(t, "alice", other), o.sign(t, "carol", other)
	if out, err := run(other, otherAlice, otherCarol); err == nil || !strings.Contains(out, `the plan names token label "standby-hsm"`) {
		t.Errorf("a token that does not match the plan: %v\n%s", err, out)
	}
	// An unknown key: refused before anything opens.
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, append(append([]byte{}, original...), "purpsoe: pek\n"...), 0o644)
	if out, err := run(typo, o.sign(t, "alice", typo), o.sign(t, "bob", typo)); err == nil || !strings.Contains(out, "field purpsoe not found") {
		t.Errorf("an unknown key in the plan: %v\n%s", err, out)
	}

	os.WriteFile(rotatePlan, original, 0o644)
	if out, err := run(rotatePlan, aliceRotate, carolRotate); err != nil || !strings.Contains(out, "card-kek/v2") {
		t.Fatalf("rotate from its plan: %v\n%s", err, out)
	}
	rewrapCarol, rewrapBob := o.sign(t, "carol", rewrapPlan), o.sign(t, "bob", rewrapPlan)
	if out, err := run(rewrapPlan, rewrapCarol, rewrapBob); err != nil || !strings.Contains(out, "result:") {
		t.Fatalf("rewrap from its plan: %v\n%s", err, out)
	}
	componentsPlan := o.plan(t, dir, "import-components.yaml", values)
	pek1, pek2 := randomKey(t), randomKey(t)
	componentsAlice, componentsBob := o.sign(t, "alice", componentsPlan), o.sign(t, "bob", componentsPlan)
	args := append(append([]string{"ceremony", "run", componentsPlan}, approvals(componentsAlice, componentsBob)...), "--component-file", componentForm(t, dir, "custodian-1", pek1, opensslKCV(t, pek1)),
		"--component-file", componentForm(t, dir, "custodian-2", pek2, opensslKCV(t, pek2)))
	if out, err := v.run(t, args...); err != nil || !strings.Contains(out, "KCV "+opensslKCV(t, xorAll(pek1, pek2))) {
		t.Fatalf("import-components from its plan: %v\n%s", err, out)
	}
	// A zone PIN key from a TR-31 block that openssl alone built, under a
	// KBPK from two custodians' components.
	kbpk1, kbpk2, zpk := randomKey(t), randomKey(t), randomKey(t)
	values["ZONE_KEY_BLOCK"] = filepath.Join(dir, "zpk.tr31")
	if err := os.WriteFile(values["ZONE_KEY_BLOCK"], []byte(openssltest.Block(t, xorAll(kbpk1, kbpk2), "D0000P0AD00N0000", zpk)), 0o600); err != nil {
		t.Fatal(err)
	}
	tr31Plan := o.plan(t, dir, "import-tr31.yaml", values)
	tr31Sigs := []string{o.sign(t, "carol", tr31Plan), o.sign(t, "alice", tr31Plan)}
	args = append(append([]string{"ceremony", "run", tr31Plan}, approvals(tr31Sigs...)...), "--component-file", componentForm(t, dir, "kbpk-1", kbpk1, opensslKCV(t, kbpk1)),
		"--component-file", componentForm(t, dir, "kbpk-2", kbpk2, opensslKCV(t, kbpk2)))
	if out, err := v.run(t, args...); err != nil || !strings.Contains(out, "imported: zpk/v1  KCV "+opensslKCV(t, zpk)) {
		t.Fatalf("import-tr31 from its plan: %v\n%s", err, out)
	}
	if out, err := replay(filepath.Join(values["TRANSCRIPTS"], "import-tr31-zpk.txt"), tr31Plan, tr31Sigs...); err != nil {
		t.Errorf("replay of the import-tr31 transcript: %v\n%s", err, out)
	}
	if backup == "wrap" {
		backupToAnotherToken(t, v, o, dir, values)
	}

	// The roster changes by a quorum of the roster in force; carol's
	// approval no longer counts after it.
	rosterPlan := o.plan(t, dir, "roster.yaml", values)
	if out, err := run(rosterPlan, o.sign(t, "alice", rosterPlan), o.sign(t, "dave", rosterPlan)); err == nil || !strings.Contains(out, "which is no officer on the roster") {
		t.Errorf("a roster approved by an officer it adds: %v\n%s", err, out)
	}
	rosterAlice, rosterBob := o.sign(t, "alice", rosterPlan), o.sign(t, "bob", rosterPlan)
	if out, err := run(rosterPlan, rosterAlice, rosterBob); err != nil || !strings.Contains(out, "roster of 3 officers fixed, quorum 2") {
		t.Fatalf("roster from its plan: %v\n%s", err, out)
	}
	values["TRANSCRIPTS"] = filepath.Join(dir, "transcripts-2")
	again := o.plan(t, t.TempDir(), "rotate.yaml", values)
	if out, err := run(again, o.sign(t, "alice", again), o.sign(t, "carol", again)); err == nil || !strings.Contains(out, "which is no officer on the roster") {
		t.Errorf("carol's approval after she left the roster: %v\n%s", err, out)
	}
	againDave, againBob := o.sign(t, "dave", again), o.sign(t, "bob", again)
	if out, err := run(again, againDave, againBob); err != nil {
		t.Fatalf("a rotation approved by the new roster: %v\n%s", err, out)
	}

	// Every transcript replays against its plan, its signatures and the
	// audit trail.
	export := filepath.Join(dir, "audit.jsonl")
	if out, err := v.run(t, "audit", "export", "--out", export); err != nil {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	for transcript, plan := range map[string][]string{
		"transcripts/init.txt":                  {initPlan, alice, bob},
		"transcripts/rotate-card-kek.txt":       {rotatePlan, aliceRotate, carolRotate},
		"transcripts/rewrap.txt":                {rewrapPlan, rewrapCarol, rewrapBob},
		"transcripts/import-components-pek.txt": {componentsPlan, componentsAlice, componentsBob},
		"transcripts/roster.txt":                {rosterPlan, rosterAlice, rosterBob},
		"transcripts-2/rotate-card-kek.txt":     {again, againDave, againBob},
	} {
		args := append([]string{"ceremony", "replay", filepath.Join(dir, transcript), plan[0], "--audit-export", export}, approvals(plan[1:]...)...)
		if out, err := v.run(t, args...); err != nil || !strings.Contains(out, "holds the ceremony.plan and ceremony.") {
			t.Errorf("replay of %s with the audit export: %v\n%s", transcript, err, out)
		}
	}
}

// tokenLabel is the token label a vault environment selects.
func tokenLabel(v *vaultEnv) string {
	for _, e := range v.env {
		if label, ok := strings.CutPrefix(e, envTokenLabel+"="); ok {
			return label
		}
	}
	return "cardvault"
}

// backupToAnotherToken runs the backup plan (every key wrapped under a key
// two custodians form from components) and restores it into a second
// token from the restore plan, each approved by two officers.
func backupToAnotherToken(t *testing.T, v *vaultEnv, o *officers, dir string, values map[string]string) {
	t.Helper()
	c1, c2 := randomKey(t), randomKey(t)
	forms := []string{
		"--component-file", componentForm(t, dir, "carol", c1, opensslKCV(t, c1)),
		"--component-file", componentForm(t, dir, "dave", c2, opensslKCV(t, c2))}
	soPIN := filepath.Join(dir, "so-pin")
	os.WriteFile(soPIN, []byte(v.tok.SOPIN+"\n"), 0o600)
	exporter := *v
	exporter.env = append(append([]string{}, v.env...), "CARDVAULT_PKCS11_SO_PIN_FILE="+soPIN)
	exportPlan := o.plan(t, dir, "export.yaml", values)
	args := append(append([]string{"ceremony", "run", exportPlan}, approvals(o.sign(t, "alice", exportPlan), o.sign(t, "carol", exportPlan))...), forms...)
	if out, err := exporter.run(t, args...); err != nil || !strings.Contains(out, "key object(s) exported") {
		t.Fatalf("export from its plan: %v\n%s", err, out)
	}
	standby := newVaultEnv(t)
	standby.env = append(standby.env, envDB+"=sqlite:"+filepath.Join(v.dir, "vault.db"))
	restore := map[string]string{}
	for k, val := range values {
		restore[k] = val
	}
	restore["TOKEN_LABEL"] = tokenLabel(standby)
	importPlan := o.plan(t, t.TempDir(), "import.yaml", restore)
	aliceImport, bobImport := o.sign(t, "alice", importPlan), o.sign(t, "bob", importPlan)
	args = append(append([]string{"ceremony", "run", importPlan}, approvals(aliceImport, bobImport)...), forms...)
	if out, err := standby.run(t, args...); err != nil || !strings.Contains(out, "key object(s) restored") {
		t.Fatalf("restore from its plan on a second token: %v\n%s", err, out)
	}
	if out, err := standby.run(t, append([]string{"ceremony", "replay", filepath.Join(values["TRANSCRIPTS"], "import.txt"), importPlan}, approvals(aliceImport, bobImport)...)...); err != nil {
		t.Fatalf("replay of the restore: %v\n%s", err, out)
	}
}

// Issue 31: the flag form, kept for development, prints the plan that
// would run the same ceremony in production; filled in, it is a plan the
// vault accepts.
func TestFlagFormPrintsItsPlan(t *testing.T) {
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init", "--dry-run"); err != nil || strings.Contains(out, "cardvault_ceremony_plan") {
		t.Fatalf("a dry run printed a plan: %v\n%s", err, out)
	}
	out, err := v.run(t, "ceremony", "rotate", "--purpose", "set-pin", "--backup", "vendor")
	if err == nil {
		t.Fatalf("rotate before init: %s", out)
	}
	_, rest, ok := strings.Cut(out, "this one would be:\n---\n")
	printed, _, ok2 := strings.Cut(rest, "---\n")
	if !ok || !ok2 {
		t.Fatalf("no plan printed:\n%s", out)
	}
	filled := strings.NewReplacer("@REASON@", "a test", "@TRANSCRIPT@", "t.txt").Replace(printed)
	plan, err := ceremonyplan.Read([]byte(filled))
	if err != nil {
		t.Fatalf("the printed plan does not read: %v\n%s", err, printed)
	}
	if plan.Ceremony != "rotate" || *plan.Parameters.Purpose != "set-pin" || *plan.Parameters.Backup != "vendor" || *plan.Parameters.GraceDays != 7 || plan.Token.Label != tokenLabel(v) {
		t.Errorf("the printed plan is not the ceremony's:\n%s", printed)
	}
}
