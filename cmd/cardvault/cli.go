package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/willabides/kongplete"
)

// cli is cardvault's command line. kong makes the parser, every --help and
// the shell completion from it; the settings each command reads are the
// structs of settings.go, bound to flags and CARDVAULT_* variables at once.
type cli struct {
	Config configFile `name:"config" placeholder:"FILE" help:"read settings that neither the command line nor the environment gives from this file of VARIABLE=value lines (the CARDVAULT_* names that --help lists; secrets refused)"`

	Serve      serveCmd      `cmd:"" help:"run the HTTP service"`
	Ceremony   ceremonyCmd   `cmd:"" help:"key ceremonies for security staff; each writes a transcript and an audit entry"`
	HSM        hsmCmd        `cmd:"" name:"hsm" help:"the token: how it behaves where PKCS#11 tokens differ"`
	Audit      auditCmd      `cmd:"" help:"the audit trail: verify its chains, export it signed"`
	Token      tokenCmd      `cmd:"" help:"API tokens: create and revoke"`
	Bench      benchCmd      `cmd:"" help:"drive a loopback server on this token (or running servers) and report each operation against its crypto bound"`
	Version    versionCmd    `cmd:"" help:"print the build: the commit, its time, whether the tree was modified, and Go's version"`
	Completion completionCmd `cmd:"" help:"print the line that makes bash or zsh complete cardvault's commands and flags"`
	Help       helpCmd       `cmd:"" hidden:"" help:"print a command's help"`
}

// invocation is what every command runs with: the signal-bound context,
// the standard streams and the JSON logger on stderr.
type invocation struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
}

// exitCode carries kong's exit (after --help, or a completion) out of
// the parser to run's return value.
type exitCode int

// newParser builds the command line's parser into grammar, printing to
// the streams given.
func newParser(grammar *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(grammar,
		kong.Name("cardvault"),
		kong.Description("The card-data vault: the HTTP service, the key ceremonies, API tokens, the audit trail and the bench."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Help(printHelp),
		kong.ValueFormatter(helpValue),
		kong.Resolvers(&settingsResolver{}),
		kong.Vars{"operator": operatorName(), "backup_usage": backupUsage, "scopes": strings.Join(httpapi.Scopes, ",")},
	)
}

// run parses a command line, runs its command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	parser, err := newParser(&cli{}, stdout, stderr)
	if err != nil {
		panic(err) // the grammar itself is wrong: every test fails here
	}
	bare := false
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code = int(c)
			if bare {
				code = 2 // the usage, for a command line that names no command
			}
		}
	}()
	kongplete.Complete(parser) // answers and exits when a shell asks for completions
	if bare = len(args) == 0; bare {
		args = []string{"--help"}
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "cardvault: %v (--help lists the commands, and each command's --help its flags)\n", err)
		return 2
	}
	in := &invocation{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.NewJSONHandler(stderr, nil))}
	if err := kctx.Run(in); err != nil {
		fmt.Fprintf(stderr, "cardvault %s: %v\n", strings.Fields(kctx.Command())[0], err)
		return 1
	}
	return 0
}

// printHelp is kong's help, then the variables no flag binds, for the
// commands that open the token.
func printHelp(options kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(options, ctx); err != nil {
		return err
	}
	node := ctx.Selected()
	if node == nil {
		return nil
	}
	for _, f := range node.Flags {
		if f.Name == "pkcs11-module" {
			fmt.Fprintln(ctx.Stdout, "\nFrom the environment only (secrets come from files or the environment, never flags):")
			for _, v := range unflagged {
				fmt.Fprintf(ctx.Stdout, "  %s\n      %s\n", v.name, strings.ReplaceAll(v.meaning, "`", ""))
			}
			return nil
		}
	}
	return nil
}

// helpValue is a flag's help as a terminal shows it: the meaning without
// its Markdown, then the variable and the default.
func helpValue(value *kong.Value) string {
	help := strings.NewReplacer("`", "", "[docs/hsm.md](docs/hsm.md)", "docs/hsm.md").Replace(value.Help)
	if len(value.Tag.Envs) > 0 {
		help += " ($" + strings.Join(value.Tag.Envs, ", $")
		if value.HasDefault && value.Default != "" && !value.IsBool() {
			help += "; default " + value.Default
		}
		help += ")"
	} else if value.HasDefault && value.Default != "" && !value.IsBool() {
		help += " (default " + value.Default + ")"
	}
	return help
}

// versionCmd is `cardvault version`.
type versionCmd struct{}

func (versionCmd) Run(in *invocation) error {
	_, err := fmt.Fprintln(in.stdout, buildVersion())
	return err
}

// helpCmd is `cardvault help [COMMAND…]`: the same as --help.
type helpCmd struct {
	Command []string `arg:"" optional:"" help:"the command to describe"`
}

func (h helpCmd) Run(in *invocation) error {
	parser, err := newParser(&cli{}, in.stdout, in.stderr)
	if err != nil {
		return err
	}
	_, err = parser.Parse(append(h.Command, "--help"))
	return err
}

// completionCmd prints what a shell needs to complete cardvault: bash
// (and zsh through bashcompinit) asks the binary itself, which answers
// from the same grammar (kongplete).
type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh" default:"bash" help:"bash or zsh"`
}

func (c completionCmd) Run(in *invocation) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if c.Shell == "zsh" {
		fmt.Fprintln(in.stdout, "autoload -U +X bashcompinit && bashcompinit")
	}
	_, err = fmt.Fprintf(in.stdout, "complete -o default -C '%s' cardvault\n", strings.ReplaceAll(self, "'", `'\''`))
	return err
}

// configFile is --config: a file of VARIABLE=value lines whose settings
// apply where neither the command line nor the environment gives one.
type configFile string

// BeforeResolve reads the file before kong resolves the settings it
// gives, refusing a key that is no setting (a typo would otherwise leave
// a default in force unnoticed) and a secret.
func (configFile) BeforeResolve(ctx *kong.Context, trace *kong.Path) error {
	path, _ := ctx.FlagValue(trace.Flag).(configFile)
	if path == "" {
		return nil
	}
	known := map[string]bool{}
	_ = kong.Visit(ctx.Model, func(node kong.Visitable, next kong.Next) error {
		if f, ok := node.(*kong.Flag); ok {
			for _, env := range f.Tag.Envs {
				known[env] = true
			}
		}
		return next(nil)
	})
	values, err := readConfigFile(string(path), known)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	ctx.AddResolver(&settingsResolver{file: values})
	return nil
}

// readConfigFile reads VARIABLE=value lines; blank lines and lines that
// start with # are skipped, and a value may be quoted.
func readConfigFile(path string, known map[string]bool) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	values := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s:%d: want VARIABLE=value", path, n)
		case isSecret(key):
			return nil, fmt.Errorf("%s:%d: %s is a secret: give it from a file (CARDVAULT_PKCS11_PIN_FILE) or the environment, not the configuration", path, n, key)
		case !known[key]:
			return nil, fmt.Errorf("%s:%d: %s is not a cardvault setting (`cardvault serve --help` lists them)", path, n, key)
		case hasKey(values, key):
			return nil, fmt.Errorf("%s:%d: %s is set twice", path, n, key)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		values[key] = value
	}
	return values, sc.Err()
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func isSecret(name string) bool {
	for _, v := range unflagged {
		if v.name == name && v.why == "a secret" {
			return true
		}
	}
	return false
}

// settingsResolver gives a setting that the command line leaves unset:
// nothing when its variable is set (the environment comes first), else
// the --config file's value; and the default when the variable is set but
// empty, which counts as unset.
type settingsResolver struct{ file map[string]string }

func (*settingsResolver) Validate(*kong.Application) error { return nil }

func (r *settingsResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	emptyVariable := false
	for _, env := range flag.Tag.Envs {
		v, set := os.LookupEnv(env)
		if v != "" {
			return nil, nil
		}
		emptyVariable = emptyVariable || set
	}
	for _, env := range flag.Tag.Envs {
		if v, ok := r.file[env]; ok {
			return v, nil
		}
	}
	if emptyVariable && r.file == nil {
		if flag.HasDefault {
			return flag.Default, nil
		}
		return "", nil
	}
	return nil, nil
}
