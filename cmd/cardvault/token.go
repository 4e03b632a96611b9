package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cardvault/cardvault/httpapi"
)

// tokenCmd handles `cardvault token create --name NAME --scopes a,b`: it
// prints a new API token once and appends only its hash to the tokens file.
func tokenCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("want: token create --name NAME --scopes SCOPE[,SCOPE...]")
	}
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	name := fs.String("name", "", "token name, recorded in the audit trail")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(httpapi.Scopes, ","))
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	path := os.Getenv(envTokensFile)
	if path == "" {
		return errors.New(envTokensFile + " is not set")
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
