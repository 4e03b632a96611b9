package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/cardvault/cardvault/softhsm"
)

// binary is the real cardvault binary, built once for the package's
// tests as the product is built; hookBinary is the same with -tags
// faultinject, for the tests that inject faults (a rewrap killed halfway,
// the token restarted underneath the bench).
var binary, hookBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cardvault-bin")
	if err != nil {
		panic(err)
	}
	binary, hookBinary = filepath.Join(dir, "cardvault"), filepath.Join(dir, "cardvault-faultinject")
	for _, args := range [][]string{{"-o", binary}, {"-tags", "faultinject", "-o", hookBinary}} {
		build := exec.Command("go", append(append([]string{"build"}, args...), ".")...)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	if report := contractReport(); report != "" {
		fmt.Println(report)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// vaultEnv is a fresh token and the environment the binary reads it from.
type vaultEnv struct {
	tok *softhsm.Token
	dir string
	env []string
	bin string // the binary run; "" is binary
}

// newVaultEnv is a fresh token and the environment the binary reaches it
// by: SoftHSM2, or NSS softokn when CARDVAULT_TEST_PKCS11=nss (scripts/
// test.sh runs the end-to-end suites again so). Tests that need SoftHSM2
// itself (its SO PIN, its configuration) use v.tok, which NSS has not.
func newVaultEnv(t *testing.T) *vaultEnv {
	t.Helper()
	if os.Getenv("CARDVAULT_TEST_PKCS11") == "nss" {
		return newNSSVaultEnv(t)
	}
	tok := softhsm.TestToken(t)
	v := tokenVaultEnv(t, tok.Module, tok.Label, tok.PIN, "SOFTHSM2_CONF="+tok.Conf)
	v.tok = tok
	return v
}

// tokenVaultEnv is the binary's environment for a token: its module,
// label and PIN (in a file), with what the implementation itself needs,
// and a fresh directory for transcripts, API tokens and the database.
func tokenVaultEnv(t *testing.T, module, label, pin string, implEnv ...string) *vaultEnv {
	t.Helper()
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &vaultEnv{dir: dir, env: append(append(os.Environ(), implEnv...),
		envModule+"="+module,
		envTokenLabel+"="+label,
		envPINFile+"="+pinFile,
		envTranscripts+"="+filepath.Join(dir, "transcripts"),
		envTokensFile+"="+filepath.Join(dir, "api-tokens"),
		envDB+"=sqlite:"+filepath.Join(dir, "vault.db"),
	)}
}

// token creates an API token with the given scopes.
func (v *vaultEnv) token(t *testing.T, name string, scopes ...string) string {
	t.Helper()
	out, err := v.run(t, "token", "create", "--name", name, "--scopes", strings.Join(scopes, ","))
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

func (v *vaultEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := binary
	if v.bin != "" {
		bin = v.bin
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = v.env
	cmd.Dir = v.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestCeremonyInitCreatesEveryKeyOnce(t *testing.T) {
	v := newVaultEnv(t)

	out, err := v.run(t, "ceremony", "init", "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if got := strings.Count(out, "would create"); got != 5 {
		t.Fatalf("dry run would create %d keys, want 5:\n%s", got, out)
	}
	if list, _ := v.run(t, "ceremony", "list"); strings.Contains(list, "/v1") {
		t.Fatalf("dry run wrote keys:\n%s", list)
	}

	out, err = v.run(t, "ceremony", "init", "--operator", "alice")
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`card-kek/v1\s+1\s+AES-256\s+KCV [0-9A-F]{6} \(AES-CMAC\)\s+created, verified`),
		regexp.MustCompile(`pan-hmac/v1\s+1\s+HMAC-SHA256\s+KCV [0-9A-F]{6} \(HMAC-SHA256\)\s+created, verified`),
		regexp.MustCompile(`set-pin/v1\s+1\s+RSA-4096\s+sha256:[0-9a-f]{64}\s+created, verified`),
		regexp.MustCompile(`pek/v1\s+1\s+AES-256\s+KCV [0-9A-F]{6} \(AES-CMAC\)\s+created, verified`),
		regexp.MustCompile(`audit/v1\s+1\s+HMAC-SHA256\s+KCV [0-9A-F]{6} \(HMAC-SHA256\)\s+created, verified`),
		regexp.MustCompile(`operator: alice`),
		regexp.MustCompile(`token:    label=cardvault-test serial=\S+`),
		regexp.MustCompile(`result: created 5 key\(s\)`),
		regexp.MustCompile(`backup:   vendor \(keys are never extractable`),
		regexp.MustCompile(`profile:  gcm-iv=honoured,raw-rsa=yes,`),
		regexp.MustCompile(`transcript sha256: [0-9a-f]{64}`),
	} {
		if !want.MatchString(out) {
			t.Errorf("init output lacks %s:\n%s", want, out)
		}
	}
	transcripts, _ := filepath.Glob(filepath.Join(v.dir, "transcripts", "ceremony-init-*.txt"))
	if len(transcripts) != 1 {
		t.Fatalf("%d transcripts written, want 1", len(transcripts))
	}
	written, _ := os.ReadFile(transcripts[0])
	if !strings.Contains(string(written), "card-kek/v1") || strings.Contains(string(written), v.tok.PIN) {
		t.Fatalf("transcript is wrong or holds the PIN:\n%s", written)
	}
	firstKCV := regexp.MustCompile(`card-kek/v1.*(KCV [0-9A-F]{6})`).FindStringSubmatch(out)[1]

	time.Sleep(1100 * time.Millisecond) // transcripts are named by the second
	out, err = v.run(t, "ceremony", "init")
	if err != nil {
		t.Fatalf("second init: %v\n%s", err, out)
	}
	if !strings.Contains(out, "nothing to do") || strings.Count(out, "exists, unchanged") != 5 || strings.Contains(out, "created,") {
		t.Fatalf("second init changed something:\n%s", out)
	}
	if !strings.Contains(out, firstKCV) {
		t.Fatalf("second init shows another card KEK (want %s):\n%s", firstKCV, out)
	}

	list, err := v.run(t, "ceremony", "list")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, list)
	}
	for _, label := range []string{"card-kek/v1", "pan-hmac/v1", "set-pin/v1", "pek/v1", "audit/v1"} {
		if !regexp.MustCompile(regexp.QuoteMeta(label) + `.*true\s+true\s+never`).MatchString(list) {
			t.Errorf("list does not show %s as active, sensitive and never extractable (the default backup):\n%s", label, list)
		}
	}
	if !regexp.MustCompile(`set-pin/v1\s+set-pin\s+1\s+RSA-4096\s+private\s+true\s+true\s+never\s+\[decrypt\]`).MatchString(list) {
		t.Errorf("set_pin private key has other usages than decrypt:\n%s", list)
	}
	if !regexp.MustCompile(`(?m)^profile: gcm-iv=honoured,raw-rsa=yes,oaep-sha256=raw,`).MatchString(list) {
		t.Errorf("list does not name the token's profile:\n%s", list)
	}
}

func TestCeremonyRefusesExistingTranscript(t *testing.T) {
	v := newVaultEnv(t)
	path := filepath.Join(v.dir, "t.txt")
	os.WriteFile(path, []byte("earlier"), 0o600)
	out, err := v.run(t, "ceremony", "init", "--transcript", path)
	if err == nil || !strings.Contains(out, "refusing to overwrite") {
		t.Fatalf("init over an existing transcript: err=%v\n%s", err, out)
	}
	if list, _ := v.run(t, "ceremony", "list"); strings.Contains(list, "/v1") {
		t.Fatalf("refused init still wrote keys:\n%s", list)
	}
}

func TestPINIsNeverAFlagAndMissingPINIsNamed(t *testing.T) {
	v := newVaultEnv(t)
	var env []string
	for _, e := range v.env {
		if !strings.HasPrefix(e, envPINFile+"=") && !strings.HasPrefix(e, envPIN+"=") {
			env = append(env, e)
		}
	}
	v.env = env
	out, err := v.run(t, "ceremony", "list")
	if err == nil || !strings.Contains(out, envPINFile) {
		t.Fatalf("list without a PIN: err=%v\n%s", err, out)
	}
	for _, flag := range []string{"--pin", "--pkcs11-pin"} {
		out, err = v.run(t, "serve", flag, "x")
		if err == nil || !strings.Contains(out, "unknown flag "+flag) {
			t.Fatalf("serve accepted a %s flag: %v\n%s", flag, err, out)
		}
	}
}

// TestOperatorMessagesNameTheFix: a second shell beside the dev vault, or
// a misconfigured one, is told which variable is wrong and how to fix it,
// never shown the PIN (issue 30, item 9).
func TestOperatorMessagesNameTheFix(t *testing.T) {
	v := newVaultEnv(t)
	without := func(names ...string) *vaultEnv {
		w := *v
		w.env = nil
		for _, e := range v.env {
			keep := true
			for _, n := range names {
				keep = keep && !strings.HasPrefix(e, n+"=")
			}
			if keep {
				w.env = append(w.env, e)
			}
		}
		return &w
	}
	wrongPIN := filepath.Join(v.dir, "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("98765432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		v    *vaultEnv
		args []string
		want []string
	}{
		{"token create without the tokens file", without(envTokensFile), []string{"token", "create", "--name", "x", "--scopes", "cards:read"}, []string{envTokensFile, ".dev/env"}},
		{"serve with a tokens file not made yet", v, []string{"serve"}, []string{envTokensFile, "no such file", "cardvault token create"}},
		{"a token label the module does not show", &vaultEnv{dir: v.dir, env: append(without(envTokenLabel).env, envTokenLabel+"=no-such-token")}, []string{"ceremony", "list"}, []string{envTokenLabel, "SOFTHSM2_CONF", ".dev/env"}},
		{"a wrong PIN", &vaultEnv{dir: v.dir, env: append(without(envPINFile).env, envPINFile+"="+wrongPIN)}, []string{"ceremony", "list"}, []string{"CKR_PIN_INCORRECT", envPINFile, wrongPIN}},
	}
	for _, tc := range cases {
		out, err := tc.v.run(t, tc.args...)
		if err == nil {
			t.Errorf("%s: succeeded:\n%s", tc.name, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the message does not name %q:\n%s", tc.name, w, out)
			}
		}
		if strings.Contains(out, "98765432") {
			t.Errorf("%s: the message shows the PIN:\n%s", tc.name, out)
		}
	}
}

// startServer runs `cardvault serve` on a free loopback port and returns
// its base URL and its log.
func startServer(t *testing.T, v *vaultEnv, extraEnv ...string) (string, *syncBuffer) {
	t.Helper()
	base, logs, _ := startServerCmd(t, v, extraEnv...)
	for _, e := range extraEnv {
		if strings.HasPrefix(e, envTLSCert+"=") {
			return base, logs // TLS is tested end to end, not through the proxy
		}
	}
	return contractProxy(t, base), logs
}

// startServerCmd is startServer that also returns the server's process.
func startServerCmd(t *testing.T, v *vaultEnv, extraEnv ...string) (string, *syncBuffer, *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(append(v.env, envListen+"="+addr), extraEnv...)
	cmd.Dir = v.dir
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("serve did not stop on SIGINT")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	base := "http://" + addr
	for i := 0; i < 100; i++ {
		// The server listens once the token and the database are open, and
		// serves (HTTP or TLS) from then on.
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return base, logs, cmd
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server did not come up:\n%s", logs)
	return "", nil, nil
}

// syncBuffer is a bytes.Buffer a child process and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestServeHealthAndReadiness(t *testing.T) {
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	v.token(t, "ops", "cards:read")
	base, _ := startServer(t, v)
	// /metrics comes after /readyz, whose request it must count.
	for _, c := range []struct {
		path string
		want int
	}{{"/healthz", 200}, {"/readyz", 200}, {"/nope", 404}, {"/metrics", 200}} {
		path, want := c.path, c.want
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body := new(bytes.Buffer)
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d: %s", path, resp.StatusCode, want, body)
		}
		if path == "/readyz" && !strings.Contains(body.String(), `"database":"ok","hsm":"ok"`) {
			t.Errorf("readyz does not report the HSM: %s", body)
		}
		if path == "/metrics" && !strings.Contains(body.String(), `cardvault_http_requests_total{method="GET",route="/readyz",status="200"}`) {
			t.Errorf("metrics lack the request counter: %.300s", body)
		}
	}
}

// The product links no test code: no testing package, no test support,
// no fault injection (those come only with -tags faultinject), and the
// kill switch a rewrap test uses is not in its environment.
func TestProductLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "testing", strings.HasPrefix(dep, "testing/"),
			strings.Contains(dep, "/internal/testsupport/"), strings.HasSuffix(dep, "/softhsm"):
			t.Errorf("the product links %s", dep)
		}
	}
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	killer := *v
	killer.env = append(append([]string{}, v.env...), "CARDVAULT_TEST_REWRAP_KILL_AFTER=1")
	if out, err := killer.run(t, "ceremony", "rewrap"); err != nil {
		t.Fatalf("the product's rewrap with the test kill switch set: %v (it must ignore it)\n%s", err, out)
	}
	if out, err := v.run(t, "bench", "--token-restarts", "1", "--duration", "1s"); err == nil || !strings.Contains(out, "-tags faultinject") {
		t.Fatalf("the product's bench offered fault injection: %v\n%s", err, out)
	}
}

// Issue 30, item 8: --help answers on every command, with the command's
// usage on stdout and exit 0, before it reads any configuration or opens
// the token (the environment here has none of the vault's variables).
func TestEveryHelpExitsZero(t *testing.T) {
	env := newcomerEnv()
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"serve", "--help"}, {"ceremony", "--help"}, {"ceremony", "init", "--help"},
		{"ceremony", "list", "--help"}, {"ceremony", "rotate", "-h"}, {"audit", "--help"}, {"audit", "verify", "--help"},
		{"audit", "export", "--help"}, {"token", "--help"}, {"token", "create", "--help"}, {"hsm", "probe", "--help"},
		{"bench", "--help"}, {"version", "--help"}, {"help", "ceremony", "rotate"}, {"completion", "--help"},
	} {
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		path := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "-") || a == "help" })
		want := strings.TrimSpace("Usage: cardvault " + strings.Join(path, " "))
		if err != nil || !strings.HasPrefix(stdout.String(), want) {
			t.Errorf("cardvault %v: %v; stdout does not start with %q:\n%s%s", args, err, want, stdout.String(), stderr.String())
		}
	}
	out, err := exec.Command(binary, "nonsense", "--help").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nonsense") {
		t.Errorf("an unknown command's --help: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "cardvault ") || !strings.Contains(string(out), runtime.Version()) {
		t.Errorf("cardvault version: %v %q, want the build and %s", err, out, runtime.Version())
	}
}

// Issue 30: README.md's configuration table is the binary's settings,
// row for row, made from the same struct tags (settings.go) as every
// --help, and names every CARDVAULT_ variable the binary reads.
func TestConfigurationTableIsTheBinarys(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("| variable | flag | default | meaning |"))
	if start < 0 {
		t.Fatal("README.md has no configuration table")
	}
	table := strings.Split(strings.SplitN(string(readme[start:]), "\n\n", 2)[0], "\n")[2:]
	want := configurationTable(t)
	if got := strings.Join(table, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("README.md's configuration table is not the binary's; the binary's is:\n\n%s", strings.Join(want, "\n"))
	}
	known := map[string]bool{}
	for _, row := range want {
		known[strings.Trim(strings.Split(row, "|")[1], " `")] = true
	}
	sources, _ := filepath.Glob("*.go")
	read := regexp.MustCompile(`"(CARDVAULT_[A-Z0-9_]+)"`)
	for _, f := range sources {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range read.FindAllStringSubmatch(string(src), -1) {
			if !known[m[1]] && !strings.HasPrefix(m[1], "CARDVAULT_TEST_") {
				t.Errorf("%s reads %s, which the configuration table does not name", f, m[1])
			}
		}
	}
	out, err := exec.Command(binary, "serve", "--help").Output()
	if err != nil || !strings.Contains(string(out), "($CARDVAULT_REVEALS_PER_CARD; default 10)") || !strings.Contains(string(out), envPIN) {
		t.Errorf("serve --help does not list the configuration: %v\n%s", err, out)
	}
}

// configurationTable is the README's configuration table as the grammar
// makes it: each variable a flag binds, once, in the grammar's order,
// then the secrets no flag binds.
func configurationTable(t *testing.T) []string {
	parser, err := newParser(&cli{}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	seen := map[string]bool{}
	kong.Visit(parser.Model, func(node kong.Visitable, next kong.Next) error {
		if f, ok := node.(*kong.Flag); ok {
			for _, env := range f.Tag.Envs {
				if seen[env] {
					continue
				}
				seen[env] = true
				def := "–"
				if f.Default != "" {
					def = "`" + f.Default + "`"
				}
				rows = append(rows, fmt.Sprintf("| `%s` | `--%s` | %s | %s |", env, f.Name, def, f.Help))
			}
		}
		return next(nil)
	})
	for _, v := range unflagged {
		rows = append(rows, fmt.Sprintf("| `%s` | none: %s | – | %s |", v.name, v.why, v.meaning))
	}
	return rows
}
