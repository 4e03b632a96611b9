package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cardvault/cardvault/httpapi"
)

const tokenUsage = "want: token create --name NAME --scopes SCOPE[,SCOPE...] | token revoke NAME"

// tokenCmd handles `cardvault token create` and `cardvault token revoke`.
func tokenCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(tokenUsage)
	}
	path := os.Getenv(envTokensFile)
	if path == "" && !slices.Contains(args, "--help") { // help needs no file
		return errors.New(envTokensFile + " is not set: it names the file of API token hashes that serve reads (scripts/dev.sh uses .dev/api-tokens; `. .dev/env` sets it in another shell)")
	}
	switch args[0] {
	case "create":
		return tokenCreate(path, args[1:], stdout)
	case "revoke":
		return tokenRevoke(path, args[1:], stdout)
	}
	return errors.New(tokenUsage)
}

// tokenCreate prints a new API token once and appends only its hash to
// the tokens file. Names are unique: the audit trail and idempotent
// answers are kept by name.
func tokenCreate(path string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	name := fs.String("name", "", "token name, recorded in the audit trail")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(httpapi.Scopes, ","))
	if err := fs.Parse(args); err != nil {
		return err
	}
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
func tokenRevoke(path string, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("want: token revoke NAME")
	}
	name := args[0]
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
