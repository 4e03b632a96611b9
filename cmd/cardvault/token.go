package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cardvault/cardvault/httpapi"
)

// tokenCmd is `cardvault token`.
type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"print a new API token once; append its hash to the tokens file"`
	Revoke tokenRevokeCmd `cmd:"" help:"remove a token; servers stop accepting it within a second"`
}

// path is the tokens file, or the error that says how to name it.
func (s tokensFileSetting) path() (string, error) {
	if s.TokensFile == "" {
		return "", errors.New("CARDVAULT_API_TOKENS_FILE is not set: it names the file of API token hashes that serve reads (scripts/dev.sh uses .dev/api-tokens; `. .dev/env` sets it in another shell)")
	}
	return s.TokensFile, nil
}

// tokenCreate prints a new API token once and appends only its hash to
// the tokens file. Names are unique: the audit trail and idempotent
// answers are kept by name.
type tokenCreateCmd struct {
	tokensFileSetting `embed:""`
	Name              string `required:"" help:"token name, recorded in the audit trail"`
	Scopes            string `required:"" placeholder:"SCOPE,…" help:"comma-separated scopes: ${scopes}"`
}

func (c *tokenCreateCmd) Run(in *invocation) error {
	path, err := c.path()
	if err != nil {
		return err
	}
	stdout, name, scopes := in.stdout, &c.Name, &c.Scopes
	names, err := httpapi.ReadTokenNames(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if slices.Contains(names, *name) {
		return fmt.Errorf("a token named %q exists; revoke it first or choose another name", *name)
	}
	token, line, err := httpapi.NewToken(*name, strings.Split(*scopes, ","))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}

// tokenRevoke removes every line of a name from the tokens file, by
// writing the rest to a new file and renaming it over the old one, so a
// server never reads half a file. Servers stop accepting the token within
// their reload interval (a second).
type tokenRevokeCmd struct {
	tokensFileSetting `embed:""`
	Name              string `arg:"" help:"the token's name"`
}

func (c *tokenRevokeCmd) Run(inv *invocation) error {
	path, err := c.path()
	if err != nil {
		return err
	}
	stdout, name := inv.stdout, c.Name
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	removed := 0
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[1] == name {
			removed++
			continue
		}
		if _, err := fmt.Fprintln(tmp, sc.Text()); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := sc.Err(); err != nil {
		tmp.Close()
		return err
	}
	if removed == 0 {
		tmp.Close()
		return fmt.Errorf("no token named %q in %s", name, path)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %q (%d line(s)); servers stop accepting it within a second\n", name, removed)
	return nil
}
