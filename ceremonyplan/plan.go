// Package ceremonyplan reads the reviewed plan a key ceremony runs from,
// and checks the officers' approvals of it: a ceremony runs only as the
// file its approvers signed says, and only with a quorum of them.
package ceremonyplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cardvault/cardvault/hsm"
)

// Format is the plan format this package reads; a plan names it in
// cardvault_ceremony_plan, so a later format is refused, not misread.
const Format = 1

// Kinds are the ceremonies a plan can run, with the parameters each
// takes: every one of them must be stated, and no other.
var Kinds = map[string][]string{
	"init":              {"backup"},
	"rotate":            {"purpose", "backup"}, // and grace_days for set-pin
	"rewrap":            {"batch"},
	"retire":            {"purpose", "version"},
	"import-components": {"purpose", "components", "backup"},
	// in is the TR-31 key block's file; the components form the KBPK.
	"import-tr31": {"purpose", "in", "components", "backup"},
	"export":      {"out", "components"},
	"import":      {"in", "components"},
	"adopt":       {"label"},
	"roster":      {},
}

// Plan is a ceremony as staff prepared and officers reviewed it.
type Plan struct {
	Format   int    `yaml:"cardvault_ceremony_plan"`
	Ceremony string `yaml:"ceremony"`
	// Reason says why the ceremony runs (a change ticket, the annual
	// rotation); it goes into the transcript.
	Reason     string     `yaml:"reason"`
	Operator   string     `yaml:"operator"`
	Transcript string     `yaml:"transcript"`
	Token      Token      `yaml:"token"`
	Parameters Parameters `yaml:"parameters,omitempty"`
	// Roster is the officers a roster ceremony (or the first init)
	// fixes, and how many of them must approve each later plan.
	Roster *Roster `yaml:"roster,omitempty"`

	sha256 [32]byte
}

// Token is the token a plan runs on: a ceremony on any other refuses
// before it changes anything.
type Token struct {
	Label  string `yaml:"label,omitempty"`
	Serial string `yaml:"serial,omitempty"`
	// URI is an RFC 7512 pkcs11: URI naming the token (its token= and
	// serial= attributes), instead of label and serial.
	URI string `yaml:"uri,omitempty"`
	// Profile, when given, is the profile `cardvault hsm probe` printed
	// for the token at review; a token that now reports another refuses.
	Profile string `yaml:"profile,omitempty"`
}

// Parameters are a ceremony's settings; nil is "not stated".
type Parameters struct {
	Purpose    *string `yaml:"purpose,omitempty"`
	Backup     *string `yaml:"backup,omitempty"`
	GraceDays  *int    `yaml:"grace_days,omitempty"`
	Batch      *int    `yaml:"batch,omitempty"`
	Version    *int    `yaml:"version,omitempty"`
	Components *int    `yaml:"components,omitempty"`
	Out        *string `yaml:"out,omitempty"`
	In         *string `yaml:"in,omitempty"`
	Label      *string `yaml:"label,omitempty"`
}

// Roster is the officers who approve ceremonies, and the quorum.
type Roster struct {
	Quorum   int       `yaml:"quorum"`
	Officers []Officer `yaml:"officers"`
}

// Officer is one approver: a name and an OpenSSH public key line.
type Officer struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// Read decodes a plan strictly (an unknown key, a second document or a
// key stated twice is refused) and checks that it states every parameter
// of its ceremony and nothing else.
func Read(raw []byte) (*Plan, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("plan: want one YAML document")
	}
	p.sha256 = sha256.Sum256(raw)
	return &p, p.validate()
}

// SHA256 is the hash of the plan's bytes as reviewed, in hex.
func (p *Plan) SHA256() string { return hex.EncodeToString(p.sha256[:]) }

func (p *Plan) validate() error {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if p.Format != Format {
		fail("cardvault_ceremony_plan: want %d, got %d", Format, p.Format)
	}
	allowed, known := Kinds[p.Ceremony]
	if !known {
		fail("ceremony: %q is not one of %s", p.Ceremony, strings.Join(kindNames(), ", "))
	}
	for field, v := range map[string]string{"reason": p.Reason, "operator": p.Operator, "transcript": p.Transcript} {
		if strings.TrimSpace(v) == "" {
			fail("%s: required", field)
		}
	}
	if p.Token.URI != "" {
		u, err := hsm.ParseURI(p.Token.URI)
		switch {
		case err != nil:
			fail("token.uri: %v", err)
		case p.Token.Label != "" || p.Token.Serial != "":
			fail("token: a uri, or a label and serial, not both")
		default:
			p.Token.Label, p.Token.Serial = u.TokenLabel, u.TokenSerial
		}
	}
	if p.Token.Label == "" && p.Token.Serial == "" {
		fail("token: name its label, its serial or both (or a pkcs11: uri with token= or serial=)")
	}
	if known {
		allowed = slices.Clone(allowed)
		if p.Ceremony == "rotate" && p.Parameters.Purpose != nil && *p.Parameters.Purpose == "set-pin" {
			allowed = append(allowed, "grace_days")
		}
		stated := p.Parameters.stated()
		for _, name := range allowed {
			if !slices.Contains(stated, name) {
				fail("parameters.%s: required for %s", name, p.Ceremony)
			}
		}
		for _, name := range stated {
			if !slices.Contains(allowed, name) {
				fail("parameters.%s: does not apply to %s", name, p.Ceremony)
			}
		}
	}
	switch {
	case p.Ceremony == "roster" && p.Roster == nil:
		fail("roster: required for a roster ceremony")
	case p.Roster != nil && p.Ceremony != "roster" && p.Ceremony != "init":
		fail("roster: only a roster ceremony or the first init fixes officers")
	case p.Roster != nil:
		if _, err := p.Roster.Parse(); err != nil {
			fail("roster: %v", err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("plan: %s", strings.Join(problems, "; "))
	}
	return nil
}

// stated lists the parameters the plan gives, by their YAML names.
func (ps Parameters) stated() []string {
	var out []string
	for name, set := range map[string]bool{
		"purpose": ps.Purpose != nil, "backup": ps.Backup != nil, "grace_days": ps.GraceDays != nil, "batch": ps.Batch != nil,
		"version": ps.Version != nil, "components": ps.Components != nil, "out": ps.Out != nil, "in": ps.In != nil, "label": ps.Label != nil,
	} {
		if set {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func kindNames() []string {
	var names []string
	for k := range Kinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
