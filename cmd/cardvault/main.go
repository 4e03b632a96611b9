// Command cardvault is the card-data vault: the HTTP service, the key
// ceremonies, API token management, audit verification and the bench tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
)

const usage = `usage: cardvault <command> [flags]

commands:
  serve                 run the HTTP service (configured from CARDVAULT_* variables)
  ceremony init         create every missing key, version 1; writes a transcript
  ceremony rotate       create the next version of one purpose's key and make it active
  ceremony rewrap       move every record to the active key versions (--dry-run counts them)
  ceremony retire       destroy a key version no record uses (--purpose P --version N)
  ceremony import-components
                        form a key's next version from custodian components (--purpose P --components N)
  ceremony export       back up every key, wrapped under a key formed from components (--out F --components N)
  ceremony import       restore a backup into this token (--in F --components N)
  ceremony adopt        record a key another tool placed, after review (--label purpose/vN)
  ceremony list         print the key catalog, and what the server rejects
  hsm probe             how the token behaves where PKCS#11 tokens differ (GCM IV, trusted wrap, mechanisms)
  audit verify          check the audit trail's hash chains and checkpoints; exit 1 at a broken link
                        (--file F: an export's, offline)
  audit export          write the trail, signed, for a SIEM or an assessor (--since T --until T --out F)
  bench [--clients N] [--duration D] [--json] [--ops a,b] [--cards N] [--target URL,URL --token-file F]
                        drive a loopback server on this token (or running servers) and report each
                        operation against its crypto bound
  token create --name NAME --scopes a,b
                        print a new API token once; append its hash to $CARDVAULT_API_TOKENS_FILE
  token revoke NAME     remove a token; servers stop accepting it within a second
  version               print the build: the commit, its time, whether the tree was modified, and Go's version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if help := helpRequest(args); help != nil {
		fmt.Fprint(stdout, help.usage)
		if !help.flags {
			return 0
		}
		// The command's own flag set prints its flags, then ErrHelp.
		args = append(args[:help.at:help.at], "--help")
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], log)
	case "ceremony":
		err = ceremonyCmd(ctx, args[1:], stdout, log)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout, log)
	case "bench":
		err = benchCmd(ctx, args[1:], stdout, stderr, log)
	case "token":
		err = tokenCmd(args[1:], stdout)
	case "hsm":
		err = hsmCmd(ctx, args[1:], stdout, log)
	case "version":
		fmt.Fprintln(stdout, buildVersion())
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cardvault: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cardvault %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// commit is the build's commit where the build names it
// (-ldflags "-X main.commit=…", as scripts/dev.sh does): Go records none
// when VCS stamping is off (GOFLAGS=-buildvcs=false) or the tree has no .git.
var commit string

// buildVersion describes the binary from the build information Go
// records: the VCS commit and time where the build had them.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "cardvault (no build information)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	v := "cardvault " + info.Main.Version
	if settings["vcs.revision"] == "" && commit != "" {
		settings["vcs.revision"] = commit
	}
	if rev := settings["vcs.revision"]; rev != "" {
		v += " commit " + rev
		if settings["vcs.modified"] == "true" {
			v += " (modified)"
		}
		if at := settings["vcs.time"]; at != "" {
			v += " of " + at
		}
	}
	return v + ", " + info.GoVersion + " " + settings["GOOS"] + "/" + settings["GOARCH"]
}

// help is what `cardvault CMD [SUB] --help` prints: the usage lines of
// the command path, and whether the command has flags of its own to
// print after them.
type help struct {
	usage string
	flags bool
	at    int // the command path's length in args
}

// leavesWithoutFlags are the commands whose --help is their usage lines
// alone; every other leaf prints its flag set too.
var leavesWithoutFlags = map[string]bool{"ceremony list": true, "hsm probe": true, "token revoke": true}

// helpRequest recognises -h, -help, --help or help anywhere after the
// command, and answers before any command reads its configuration or
// opens the token.
func helpRequest(args []string) *help {
	at := slices.IndexFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
	if len(args) > 1 && args[1] == "help" {
		at = 1
	}
	if at < 1 {
		return nil
	}
	path := args[0]
	if at >= 2 && !strings.HasPrefix(args[1], "-") {
		path += " " + args[1]
	}
	var lines strings.Builder
	printing := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  "+path+" ") || line == "  "+path:
			printing = true
		case !strings.HasPrefix(line, "                        "):
			printing = false
		}
		if printing {
			lines.WriteString(line + "\n")
		}
	}
	if lines.Len() == 0 {
		return nil // an unknown command: the dispatch says so
	}
	leaf := strings.Contains(path, " ") || path == "serve" || path == "bench"
	text := "usage:\n" + lines.String()
	switch {
	case path == "serve":
		text += configurationHelp()
	case leaf && !strings.HasPrefix(path, "token"):
		text += "\nreads the token and database variables `cardvault serve --help` lists\n"
	}
	return &help{usage: text, flags: leaf && !leavesWithoutFlags[path], at: min(at, strings.Count(path, " ")+1)}
}
