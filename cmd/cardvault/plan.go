package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/cardvault/cardvault/ceremonyplan"
	"github.com/cardvault/cardvault/sqlstore"
)

// ceremonyRunCmd is `cardvault ceremony run PLAN`: a ceremony as staff
// prepared it and a quorum of officers approved it.
type ceremonyRunCmd struct {
	Plan          string   `arg:"" type:"existingfile" help:"the reviewed plan (YAML; examples/ceremonies/ has one of each kind)"`
	Approval      []string `name:"approval" sep:"none" type:"existingfile" placeholder:"FILE" help:"an officer's signature over the plan, as ssh-keygen -Y sign -n cardvault-ceremony -f KEY PLAN writes it (PLAN.sig); one per officer"`
	Check         bool     `help:"check the plan (and approvals against a roster the plan fixes) without a token or a database, and print what officers sign"`
	ComponentFile []string `name:"component-file" sep:"none" type:"existingfile" placeholder:"FILE" help:"a custodian's component file, for ceremonies that take components; omit to be prompted"`
	vaultRecords  `embed:""`
}

// plannedCeremony is a ceremony command a plan can run.
type plannedCeremony interface {
	flags() *ceremonyFlags
	run(*invocation) error
}

func (cf *ceremonyFlags) flags() *ceremonyFlags { return cf }

// planRun is what a planned ceremony carries into its transcript and
// audit entries: the plan, its approvals, and the roster they were
// checked on.
type planRun struct {
	path      string
	plan      *ceremonyplan.Plan
	approvals []ceremonyplan.Approval
	rosterOn  int                  // the roster version the approvals were checked on; 0 for none
	newRoster *ceremonyplan.Roster // a roster the plan fixes
}

func (c *ceremonyRunCmd) Run(in *invocation) error {
	raw, plan, signatures, err := readPlan(c.Plan, c.Approval)
	if err != nil {
		return err
	}
	if c.Check {
		return checkPlan(in.stdout, c.Plan, raw, plan, signatures)
	}
	members, quorum, rosterOn, err := c.approvers(in.ctx, plan)
	if err != nil {
		return err
	}
	approvals, err := ceremonyplan.Verify(raw, signatures, members, quorum)
	if err != nil {
		return err
	}
	ceremony, err := c.ceremonyOf(plan)
	if err != nil {
		return err
	}
	cf := ceremony.flags()
	cf.Operator, cf.Transcript, cf.vaultRecords = plan.Operator, plan.Transcript, c.vaultRecords
	cf.plan = &planRun{path: c.Plan, plan: plan, approvals: approvals, rosterOn: rosterOn, newRoster: plan.Roster}
	return concluded(in, ceremony.run)
}

// readPlan reads a plan, strictly, and the approvals' signature files.
func readPlan(path string, approvalFiles []string) ([]byte, *ceremonyplan.Plan, [][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := ceremonyplan.Read(raw)
	if err != nil {
		return nil, nil, nil, err
	}
	signatures := make([][]byte, len(approvalFiles))
	for i, f := range approvalFiles {
		if signatures[i], err = os.ReadFile(f); err != nil {
			return nil, nil, nil, err
		}
	}
	return raw, plan, signatures, nil
}

// approvers are the officers whose approvals count for the plan, and how
// many are needed: the roster in force, or, before any roster, the one
// the plan fixes (the first init, or a first roster ceremony).
func (c *ceremonyRunCmd) approvers(ctx context.Context, plan *ceremonyplan.Plan) ([]ceremonyplan.Member, int, int, error) {
	store, err := c.databaseSettings.open(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	defer store.Close()
	if ran, err := store.PlanRan(ctx, plan.SHA256()); err != nil || ran {
		return nil, 0, 0, cmp.Or(err, fmt.Errorf("this plan ran before (sha256 %s); a ceremony runs from a new plan, newly approved", plan.SHA256()))
	}
	roster, err := store.CurrentRoster(ctx)
	switch {
	case errors.Is(err, sqlstore.ErrNoRoster):
		if plan.Roster == nil {
			return nil, 0, 0, errors.New("the vault has no officer roster yet: the first planned ceremony is an init or a roster ceremony whose plan lists the officers (examples/ceremonies/init.yaml)")
		}
		members, err := plan.Roster.Parse()
		return members, plan.Roster.Quorum, 0, err
	case err != nil:
		return nil, 0, 0, err
	case plan.Roster != nil && plan.Ceremony != "roster":
		return nil, 0, 0, fmt.Errorf("the vault has an officer roster (version %d): change it with a roster ceremony, approved by its quorum", roster.Version)
	}
	var members []ceremonyplan.Member
	for _, o := range roster.Officers {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.PublicKey))
		if err != nil {
			return nil, 0, 0, fmt.Errorf("roster version %d, officer %s: %w", roster.Version, o.Name, err)
		}
		members = append(members, ceremonyplan.Member{Name: o.Name, Key: key, Fingerprint: o.Fingerprint})
	}
	return members, roster.Quorum, roster.Version, nil
}

// ceremonyOf is the command the plan runs, with its parameters.
func (c *ceremonyRunCmd) ceremonyOf(plan *ceremonyplan.Plan) (plannedCeremony, error) {
	p := plan.Parameters
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	components := func() componentFlags {
		return componentFlags{Components: *p.Components, ComponentFile: c.ComponentFile}
	}
	switch plan.Ceremony {
	case "init":
		return &ceremonyInitCmd{Backup: str(p.Backup)}, nil
	case "rotate":
		return &ceremonyRotateCmd{Purpose: str(p.Purpose), GraceDays: p.GraceDays, Backup: str(p.Backup)}, nil
	case "rewrap":
		return &ceremonyRewrapCmd{Batch: *p.Batch}, nil
	case "retire":
		return &ceremonyRetireCmd{Purpose: str(p.Purpose), Version: strconv.Itoa(*p.Version)}, nil
	case "import-components":
		return &ceremonyImportComponentsCmd{Purpose: str(p.Purpose), componentFlags: components(), Backup: str(p.Backup)}, nil
	case "import-tr31":
		return &ceremonyImportTR31Cmd{Purpose: str(p.Purpose), In: str(p.In), componentFlags: components(), Backup: str(p.Backup)}, nil
	case "export":
		return &ceremonyExportCmd{Out: str(p.Out), componentFlags: components()}, nil
	case "import":
		return &ceremonyImportCmd{In: str(p.In), componentFlags: components()}, nil
	case "adopt":
		return &ceremonyAdoptCmd{Label: str(p.Label)}, nil
	case "roster":
		return &ceremonyRosterCmd{}, nil
	}
	return nil, fmt.Errorf("ceremony %q cannot run from a plan", plan.Ceremony)
}

// claim checks, once the ceremony has opened the token and before it
// changes anything, that the token is the plan's, then records the plan
// and its approvals (and the roster it fixes) so none can run again.
func (r *planRun) claim(ctx context.Context, c *ceremony) error {
	t := r.plan.Token
	switch {
	case t.Label != "" && t.Label != c.tok.Label:
		return fmt.Errorf("the plan names token label %q; the token opened is %q (serial %s)", t.Label, c.tok.Label, c.tok.Serial)
	case t.Serial != "" && t.Serial != c.tok.Serial:
		return fmt.Errorf("the plan names token serial %s; the token opened is serial %s", t.Serial, c.tok.Serial)
	case !ceremonyplan.ProfileMatches(t.Profile, c.tok.Profile):
		return fmt.Errorf("the plan expects the token profile %q; the token reports %q", t.Profile, c.tok.Profile)
	case c.store == nil:
		return errors.New("a planned ceremony records its plan in the database, and this one opened none")
	}
	claim := sqlstore.PlanClaim{SHA256: r.plan.SHA256(), Ceremony: r.plan.Ceremony, At: c.now, Operator: r.plan.Operator}
	for _, a := range r.approvals {
		claim.Approvals = append(claim.Approvals, sqlstore.PlanApproval{Officer: a.Officer, Fingerprint: a.Fingerprint, Signature: a.Signature})
	}
	if r.newRoster != nil {
		members, err := r.newRoster.Parse()
		if err != nil {
			return err
		}
		claim.Roster = &sqlstore.Roster{Quorum: r.newRoster.Quorum}
		for i, m := range members {
			claim.Roster.Officers = append(claim.Roster.Officers, sqlstore.Officer{Name: m.Name, PublicKey: strings.TrimSpace(r.newRoster.Officers[i].Key), Fingerprint: m.Fingerprint})
		}
	}
	return c.store.ClaimPlan(ctx, claim, r.rosterOn)
}

// record prints the plan's part of a transcript.
func (r *planRun) record(t *transcript) {
	t.printf("plan:     %s sha256 %s\n", r.path, r.plan.SHA256())
	t.printf("reason:   %s\n", r.plan.Reason)
	t.printf("approved: %s\n", r.approvers())
}

// approvers names each approving officer with their key's fingerprint.
func (r *planRun) approvers() string {
	var names []string
	for _, a := range r.approvals {
		names = append(names, a.Officer+" "+a.Fingerprint)
	}
	return strings.Join(names, ", ")
}

// checkPlan prints what a plan will do and what officers sign, checking
// approvals where the plan itself carries the roster.
func checkPlan(w io.Writer, path string, raw []byte, plan *ceremonyplan.Plan, signatures [][]byte) error {
	fmt.Fprintf(w, "plan:       %s\nsha256:     %s\nceremony:   %s\nreason:     %s\noperator:   %s\ntoken:      label=%q serial=%q profile=%q\ntranscript: %s\n",
		path, plan.SHA256(), plan.Ceremony, plan.Reason, plan.Operator, plan.Token.Label, plan.Token.Serial, plan.Token.Profile, plan.Transcript)
	if plan.Roster != nil {
		members, err := plan.Roster.Parse()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "roster:     quorum %d of %d\n", plan.Roster.Quorum, len(members))
		for _, m := range members {
			fmt.Fprintf(w, "  officer   %s %s\n", m.Name, m.Fingerprint)
		}
		if len(signatures) > 0 {
			approvals, err := ceremonyplan.Verify(raw, signatures, members, plan.Roster.Quorum)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "approvals:  %d verify against the plan's roster (the vault's own roster, if it has one, decides at the run)\n", len(approvals))
		}
	}
	fmt.Fprintf(w, "\nplan checked. Each officer approves it with:\n  ssh-keygen -Y sign -n %s -f KEY %s\n", ceremonyplan.Namespace, path)
	return nil
}

// ceremonyRosterCmd fixes a new officer roster. It runs only from a plan
// approved by a quorum of the roster in force (or, for the first roster,
// of the officers it lists): there is no flag form.
type ceremonyRosterCmd struct {
	ceremonyFlags
}

func (rc *ceremonyRosterCmd) run(in *invocation) error {
	if rc.plan == nil || rc.plan.newRoster == nil {
		return errors.New("a roster is fixed only by a planned roster ceremony")
	}
	c, err := rc.begin(in.ctx, "roster", in.log, withStore)
	if err != nil {
		return err
	}
	defer c.close()
	t := c.start(in.ctx, in.stdout, "roster")
	members, err := rc.plan.newRoster.Parse()
	if err != nil {
		return err
	}
	for _, m := range members {
		t.printf("officer:  %s %s\n", m.Name, m.Fingerprint)
	}
	t.printf("\nresult: roster of %d officers fixed, quorum %d\n", len(members), rc.plan.newRoster.Quorum)
	return t.save(in.ctx)
}

// flagForm runs a ceremony from its flags, as in development, after
// printing the plan that would run it in production: the same
// parameters, with @…@ where a plan must say what the flags left to a
// default or to the moment.
func flagForm(in *invocation, c plannedCeremony) error {
	if plan := planOf(c); plan != nil {
		out, err := yaml.Marshal(plan)
		if err != nil {
			return err
		}
		fmt.Fprintf(in.stdout, "flag form (development). In production this ceremony runs from a reviewed plan (docs/ceremonies.md); this one would be:\n---\n%s---\n\n", out)
	}
	return concluded(in, c.run)
}

// planOf is the plan a flag-form ceremony would have run from; nil for a
// dry run, which is no ceremony.
func planOf(c plannedCeremony) *ceremonyplan.Plan {
	cf := c.flags()
	orFill := func(v, name string) *string {
		if v == "" {
			v = "@" + name + "@"
		}
		return &v
	}
	plan := &ceremonyplan.Plan{Format: ceremonyplan.Format, Reason: "@REASON@", Operator: cf.Operator, Transcript: *orFill(cf.Transcript, "TRANSCRIPT"),
		Token: ceremonyplan.Token{Label: cmp.Or(cf.TokenLabel, "cardvault"), Serial: cf.TokenSerial}}
	p := &plan.Parameters
	switch c := c.(type) {
	case *ceremonyInitCmd:
		if c.DryRun {
			return nil
		}
		plan.Ceremony, p.Backup = "init", orFill(c.Backup, "BACKUP")
	case *ceremonyRotateCmd:
		plan.Ceremony, p.Purpose, p.Backup = "rotate", orFill(c.Purpose, "PURPOSE"), orFill(c.Backup, "BACKUP")
		if c.Purpose == "set-pin" {
			p.GraceDays = cmp.Or(c.GraceDays, ptr(7))
		}
	case *ceremonyRewrapCmd:
		if c.DryRun {
			return nil
		}
		plan.Ceremony, p.Batch = "rewrap", &c.Batch
	case *ceremonyRetireCmd:
		version, _ := strconv.Atoi(c.Version)
		plan.Ceremony, p.Purpose, p.Version = "retire", orFill(c.Purpose, "PURPOSE"), &version
	case *ceremonyImportComponentsCmd:
		plan.Ceremony, p.Purpose, p.Components, p.Backup = "import-components", orFill(c.Purpose, "PURPOSE"), &c.Components, orFill(c.Backup, "BACKUP")
	case *ceremonyImportTR31Cmd:
		plan.Ceremony, p.Purpose, p.In, p.Components, p.Backup = "import-tr31", orFill(c.Purpose, "PURPOSE"), orFill(c.In, "IN"), &c.Components, orFill(c.Backup, "BACKUP")
	case *ceremonyExportCmd:
		plan.Ceremony, p.Out, p.Components = "export", orFill(c.Out, "OUT"), &c.Components
	case *ceremonyImportCmd:
		plan.Ceremony, p.In, p.Components = "import", orFill(c.In, "IN"), &c.Components
	case *ceremonyAdoptCmd:
		plan.Ceremony, p.Label = "adopt", orFill(c.Label, "LABEL")
	default:
		return nil
	}
	return plan
}

func ptr[T any](v T) *T { return &v }
