package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// transcript collects a ceremony's record: printed as it goes, written to
// a file at the end, and closed with its own SHA-256 so it can be signed
// off. Saving it appends the ceremony to the audit chain, with that hash,
// so the chain and the transcript vouch for each other; a ceremony run
// without a database says so in the transcript instead.
type transcript struct {
	buf bytes.Buffer
	out io.Writer

	ceremony, operator, path string
	tok                      hsm.TokenInfo
	plan                     *planRun      // nil: the flag form
	store                    auditAppender // nil: no database opened
	result                   string        // the "result:" line's text
	saved                    bool
	dryRun                   bool // a dry run writes nothing, not even when it fails
}

// auditAppender is the store as a ceremony's transcript writes to it.
type auditAppender interface {
	AppendAudit(ctx context.Context, e vault.AuditEntry) error
}

// newTranscript starts a ceremony's transcript with what every one
// records: the ceremony, time, operator and token. store is where its
// audit entry goes, or nil for a ceremony that opened no database.
func newTranscript(ctx context.Context, out io.Writer, cf ceremonyFlags, ceremony string, now time.Time, tok hsm.TokenInfo, store *sqlstore.Store) *transcript {
	t := &transcript{out: out, ceremony: ceremony, operator: cf.Operator, path: cf.Transcript, tok: tok, plan: cf.plan}
	if store != nil {
		t.store = store
	}
	if run, ok := ctx.Value(ceremonyRunKey{}).(*ceremonyRun); ok {
		run.t = t
	}
	t.printf("cardvault key ceremony: %s\n", ceremony)
	t.printf("time:     %s\n", now.UTC().Format(time.RFC3339))
	t.printf("operator: %s\n", cf.Operator)
	t.printf("token:    label=%s serial=%s model=%s manufacturer=%s\n", tok.Label, tok.Serial, tok.Model, tok.Manufacturer)
	t.printf("profile:  %s\n", tok.Profile)
	if cf.plan != nil {
		cf.plan.record(t)
	}
	return t
}

// Write records and prints p, so tables can be written straight into a
// transcript.
func (t *transcript) Write(p []byte) (int, error) {
	t.buf.Write(p)
	return t.out.Write(p)
}

func (t *transcript) printf(format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	if r, ok := strings.CutPrefix(strings.TrimLeft(line, "\n"), "result: "); ok {
		t.result = strings.TrimSpace(r)
	}
	t.buf.WriteString(line)
	io.WriteString(t.out, line)
}

// save writes the transcript, refusing to overwrite, prints its hash and
// appends the ceremony's audit entry: a ceremony that ran to its end.
func (t *transcript) save(ctx context.Context) error { return t.saveAs(ctx, "ok") }

// saveRefused is save for a ceremony that stopped at a refusal or a
// failure it reports in the transcript.
func (t *transcript) saveRefused(ctx context.Context, err error) error {
	return t.saveAs(ctx, "failed: "+err.Error())
}

func (t *transcript) saveAs(ctx context.Context, outcome string) error {
	if t.store == nil {
		t.printf("audit:    no database opened; this ceremony is in no audit chain\n")
	}
	if err := os.MkdirAll(filepath.Dir(t.path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("transcript: %w", err)
	}
	if _, err := f.Write(t.buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("transcript: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("transcript: %w", err)
	}
	t.saved = true
	sum := sha256.Sum256(t.buf.Bytes())
	fmt.Fprintf(t.out, "transcript: %s\ntranscript sha256: %x\n", t.path, sum)
	if t.store == nil {
		return nil
	}
	e := vault.AuditEntry{At: time.Now().UTC(), Actor: t.operator, Action: "ceremony." + t.ceremony, Outcome: outcome,
		Detail: map[string]string{
			"token_label":       t.tok.Label,
			"token_serial":      t.tok.Serial,
			"profile":           t.tok.Profile,
			"keys":              strings.Join(t.keys(), " "),
			"result":            t.result,
			"transcript":        filepath.Base(t.path),
			"transcript_sha256": hex.EncodeToString(sum[:]),
		}}
	if t.plan != nil {
		e.Detail["plan_sha256"], e.Detail["approvers"] = t.plan.plan.SHA256(), t.plan.approvers()
	}
	if err := t.store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("the transcript is saved, but the ceremony's audit entry was not written: %w", err)
	}
	fmt.Fprintf(t.out, "audit:      entry ceremony.%s appended\n", t.ceremony)
	return nil
}

// keyMention is a key label with the check value printed after it on the
// same line: "card-kek/v2  KCV 1A2B3C (AES-CMAC)" or "set-pin/v1 sha256:…".
var keyMention = regexp.MustCompile(`\b((?:card-kek|pan-hmac|set-pin|pek|audit)/v[0-9]+)\b(?:[^\n]*?\b(KCV [0-9A-F]{6}(?: \([A-Z-]+\))?|sha256:[0-9a-f]{64}))?`)

// keys are the key versions the transcript names, each with the check
// value it printed beside it, for the audit entry: the transcript says
// everything, the entry says which keys.
func (t *transcript) keys() []string {
	var out []string
	for _, m := range keyMention.FindAllStringSubmatch(t.buf.String(), -1) {
		k := m[1]
		if m[2] != "" {
			k += "=" + strings.ReplaceAll(m[2], " ", "_")
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// ceremonyRun follows one ceremony command, so that a ceremony that fails
// after its transcript began still leaves its transcript and its audit
// entry.
type ceremonyRun struct{ t *transcript }

type ceremonyRunKey struct{}

func withCeremonyRun(ctx context.Context) (context.Context, *ceremonyRun) {
	run := &ceremonyRun{}
	return context.WithValue(ctx, ceremonyRunKey{}, run), run
}

// conclude records a ceremony that failed after it began: the transcript
// says how, is saved, and its audit entry says failed. It returns err.
func (r *ceremonyRun) conclude(ctx context.Context, err error) error {
	if err == nil || r.t == nil || r.t.saved || r.t.dryRun {
		return err
	}
	r.t.printf("\nresult: FAILED: %v\n", err)
	// The ceremony's own context may be what ended it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if serr := r.t.saveRefused(ctx, err); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// defaultTranscript names a ceremony's transcript by its time to the
// microsecond and a sequence number, the first free one: two ceremonies in
// the same instant (a refused retire and its retry) get two transcripts,
// and the names sort in the order the ceremonies ran. save's O_EXCL still
// refuses to overwrite if another process takes the name in between.
func defaultTranscript(dir, ceremony string, now time.Time) string {
	stamp := now.UTC().Format("20060102T150405.000000Z")
	for seq := 1; ; seq++ {
		path := filepath.Join(dir, fmt.Sprintf("ceremony-%s-%s-%03d.txt", ceremony, stamp, seq))
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) || seq == 999 {
			return path
		}
	}
}
