package ceremonyplan

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// schemaValidates reports whether plan.schema.json accepts a plan.
func schemaValidates(t *testing.T, schema *jsonschema.Schema, raw string) error {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		return err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return schema.Validate(inst)
}

// The repository's schema (for editors and review tools) and the decoder
// the vault runs agree: on every example plan, and on every refusal the
// decoder makes that a schema can express.
func TestSchemaAgreesWithTheDecoder(t *testing.T) {
	c := jsonschema.NewCompiler()
	raw, err := os.ReadFile("plan.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("plan.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("plan.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob("../examples/ceremonies/*.yaml")
	if len(examples) < 6 {
		t.Fatalf("%d example plans", len(examples))
	}
	alice, bob, carol, dave := newOfficer(t, "a"), newOfficer(t, "b"), newOfficer(t, "c"), newOfficer(t, "d")
	keyLine := func(o officer) string { return strings.TrimSpace(string(sshAuthorizedKey(o))) }
	filled := strings.NewReplacer("@TOKEN_LABEL@", "cardvault", "@TRANSCRIPTS@", "/srv/ceremonies", "@BACKUP@", "vendor",
		"@BACKUP_FILE@", "/srv/backup.json", "@ALICE_KEY@", keyLine(alice), "@BOB_KEY@", keyLine(bob), "@CAROL_KEY@", keyLine(carol), "@DAVE_KEY@", keyLine(dave))
	for _, path := range examples {
		b, _ := os.ReadFile(path)
		plan := filled.Replace(string(b))
		if _, err := Read([]byte(plan)); err != nil {
			t.Errorf("%s: the decoder refuses it: %v", path, err)
		}
		if err := schemaValidates(t, schema, plan); err != nil {
			t.Errorf("%s: the schema refuses it: %v", path, err)
		}
	}
	for name, plan := range map[string]string{
		"unknown key":            rotatePlan + "extra: 1\n",
		"unknown parameter":      strings.Replace(rotatePlan, "  backup: vendor\n", "  backup: vendor\n  bakup: wrap\n", 1),
		"missing parameter":      strings.Replace(rotatePlan, "  backup: vendor\n", "", 1),
		"parameter of another":   rotatePlan + "  batch: 10\n",
		"grace days off set-pin": rotatePlan + "  grace_days: 7\n",
		"set-pin without grace":  strings.Replace(rotatePlan, "purpose: card-kek", "purpose: set-pin", 1),
		"unknown ceremony":       strings.Replace(rotatePlan, "ceremony: rotate", "ceremony: rotat", 1),
		"no token":               strings.Replace(rotatePlan, "  label: cardvault\n", "", 1),
		"no operator":            strings.Replace(rotatePlan, "operator: alice\n", "", 1),
		"a later format":         strings.Replace(rotatePlan, "plan: 1", "plan: 2", 1),
		"key twice":              rotatePlan + "operator: mallory\n",
		"roster on a rotation":   rotatePlan + "roster:\n  quorum: 2\n  officers: []\n",
	} {
		_, decoderErr := Read([]byte(plan))
		schemaErr := schemaValidates(t, schema, plan)
		if decoderErr == nil || schemaErr == nil {
			t.Errorf("%s: decoder %v, schema %v: both must refuse", name, decoderErr, schemaErr)
		}
	}
}
