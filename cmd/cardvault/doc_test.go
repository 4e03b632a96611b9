package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// docBlock is one ```sh block of a Markdown file.
type docBlock struct {
	file string
	line int // of the opening fence
	text string
	skip string // the reason given by a doctest marker, if any
}

// docSkip is the marker a block not meant to run carries on the line
// before its fence: <!-- doctest: skip: why -->.
var docSkip = regexp.MustCompile(`^\s*<!-- doctest: skip: (.+) -->\s*$`)

// shellBlocks returns the ```sh blocks of the Markdown file doc in repo,
// indented ones (in list items) too, with their indentation removed.
func shellBlocks(t *testing.T, repo, doc string) []docBlock {
	t.Helper()
	f, err := os.Open(filepath.Join(repo, doc))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docBlock
	var cur *docBlock
	var indent, prev string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur == nil && trimmed == "```sh":
			indent = line[:len(line)-len(trimmed)]
			cur = &docBlock{file: doc, line: n}
			if m := docSkip.FindStringSubmatch(prev); m != nil {
				cur.skip = m[1]
			}
		case cur != nil && trimmed == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		}
		prev = line
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocumentedCommandsRunAsWritten is a newcomer's first hour: it runs
// scripts/dev.sh as the README says (in a directory of its own and on a
// free port), then, in a second shell with none of the vault's variables,
// every ```sh block of README.md and examples/README.md in order, as
// written, under `set -euo pipefail`. A block that is not meant to run
// (the set-up commands themselves, a synopsis, a stack that needs
// images) says so in a marker, and is counted apart.
func TestDocumentedCommandsRunAsWritten(t *testing.T) {
	if os.Getenv("CARDVAULT_TEST_PKCS11") == "nss" {
		t.Skip("dev.sh serves on SoftHSM2")
	}
	for _, c := range []string{"bash", "openssl", "jq", "curl", "node", "/usr/bin/python3"} {
		testenv.RequireCommand(t, c)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dev := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()

	newcomer := newcomerEnv()
	serve := exec.Command("bash", "scripts/dev.sh")
	serve.Dir = repo
	serve.Env = append(newcomer, "CARDVAULT_DEV_DIR="+dev, "CARDVAULT_LISTEN="+listen)
	serve.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var serveLog syncBuffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-serve.Process.Pid, syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- serve.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-serve.Process.Pid, syscall.SIGKILL)
			t.Errorf("dev.sh did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("dev.sh:\n%s", serveLog.String())
		}
	})
	ready := false
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get("http://" + listen + "/readyz"); err == nil {
			resp.Body.Close()
			if ready = resp.StatusCode == http.StatusOK; ready {
				break
			}
		}
		if serve.ProcessState != nil {
			break
		}
	}
	if !ready {
		t.Fatalf("dev.sh did not serve a ready vault on %s:\n%s", listen, serveLog.String())
	}
	if !strings.Contains(serveLog.String(), ". .dev/env") {
		t.Errorf("dev.sh's banner does not say how a second shell reaches the vault:\n%s", serveLog.String())
	}

	// dev.sh's binary, on the second shell's PATH, names its commit.
	version := exec.Command("bash", "-c", ". .dev/env && cardvault version")
	version.Dir, version.Env = t.TempDir(), newcomer
	if err := os.Symlink(dev, filepath.Join(version.Dir, ".dev")); err != nil {
		t.Fatal(err)
	}
	if out, err := version.CombinedOutput(); err != nil || !strings.Contains(string(out), " commit ") {
		t.Errorf("cardvault version after . .dev/env: %v\n%s", err, out)
	}

	// The second shell works in a directory of its own that holds the
	// repository's examples and dev.sh's .dev, as the repository would.
	work := t.TempDir()
	for name, target := range map[string]string{".dev": dev, "examples": filepath.Join(repo, "examples")} {
		if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	ran, skipped := 0, 0
	for _, doc := range []string{"README.md", "examples/README.md"} {
		var script strings.Builder
		script.WriteString("set -euo pipefail\n")
		for _, b := range shellBlocks(t, repo, doc) {
			if b.skip != "" {
				t.Logf("%s:%d: not run: %s", b.file, b.line, b.skip)
				skipped++
				continue
			}
			ran++
			fmt.Fprintf(&script, "echo '### %s:%d' >&2\n%s", b.file, b.line, b.text)
		}
		cmd := exec.Command("bash", "-c", script.String())
		cmd.Dir, cmd.Env = work, newcomer
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		t.Logf("%s:\n%s", doc, stdout.String())
		if err != nil {
			t.Fatalf("%s: a block failed (the last ### names it): %v\n%s", doc, err, stderr.String())
		}
		if leftovers, _ := os.ReadDir(work); len(leftovers) != 2 {
			var names []string
			for _, e := range leftovers {
				names = append(names, e.Name())
			}
			t.Errorf("%s's blocks left files behind in the working directory: %v", doc, names)
		}
	}
	t.Logf("%d documented blocks ran as written; %d are marked not to run", ran, skipped)
	if ran < 5 {
		t.Fatalf("only %d blocks ran: markers must not hide the documentation from its test", ran)
	}
}

// newcomerEnv is a shell's environment with none of the vault's
// variables, as a newcomer's second shell has.
func newcomerEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CARDVAULT_") && !strings.HasPrefix(e, "SOFTHSM2_CONF=") {
			env = append(env, e)
		}
	}
	return env
}

// Issue 30, item 11: the example clients run without their arguments
// print their usage, not a traceback.
func TestExampleClientsPrintUsage(t *testing.T) {
	for _, c := range [][]string{{"/usr/bin/python3", "../../examples/solaris_client.py"}, {"node", "../../examples/solaris_client.mjs"}} {
		testenv.RequireCommand(t, c[0])
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Env = newcomerEnv()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.HasPrefix(string(out), "usage: ") || strings.Contains(string(out), "Traceback") || strings.Contains(string(out), "    at ") {
			t.Errorf("%v without arguments: %v\n%s", c, err, out)
		}
	}
}
