// Command cardvault is the card-data vault: the HTTP service, the key
// ceremonies, API token management, audit verification and the bench tool.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
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
