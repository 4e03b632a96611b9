package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// PostgresPair is a PostgreSQL primary with a synchronous streaming
// standby, each a local cluster of Debian's binaries, for failover tests:
// a commit is acknowledged only once the standby has it, so promoting the
// standby loses nothing that was acknowledged.
type PostgresPair struct {
	t                        testing.TB
	bin, dir                 string
	PrimaryPort, StandbyPort int
	primaryData, standbyData string
}

// StartPostgresPair starts the pair and stops both when the test ends.
func StartPostgresPair(t testing.TB) *PostgresPair {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		Require(t, "PostgreSQL server binaries", fmt.Errorf("no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)"))
	}
	sort.Strings(bins)
	// Not t.TempDir: its parent is private to root, and the server runs
	// as postgres.
	dir, err := os.MkdirTemp("", "cardvault-pgpair-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &PostgresPair{t: t, bin: filepath.Dir(bins[len(bins)-1]), dir: dir}
	if os.Geteuid() == 0 {
		// The server refuses to run as root.
		if out, err := exec.Command("chown", "postgres:", p.dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	p.primaryData, p.standbyData = filepath.Join(p.dir, "primary"), filepath.Join(p.dir, "standby")
	p.PrimaryPort, p.StandbyPort = FreePort(t), FreePort(t)
	p.run("initdb", "-D", p.primaryData, "-A", "trust", "-U", "postgres", "--no-sync")
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 100\n"+
		"wal_level = replica\nmax_wal_senders = 4\nsynchronous_standby_names = '*'\n", p.dir)
	p.appendConf(p.primaryData, conf)
	p.appendHBA(p.primaryData, "host replication postgres 127.0.0.1/32 trust\n")
	p.ctl(p.primaryData, p.PrimaryPort, "start")
	p.run("pg_basebackup", "-D", p.standbyData, "-h", "127.0.0.1", "-p", fmt.Sprint(p.PrimaryPort), "-U", "postgres", "-R", "--no-sync", "-X", "stream")
	// -R wrote primary_conninfo; once promoted, the standby must not wait
	// for a standby of its own.
	p.appendConf(p.standbyData, "synchronous_standby_names = ''\n")
	p.ctl(p.standbyData, p.StandbyPort, "start")
	t.Cleanup(func() {
		for _, d := range []string{p.standbyData, p.primaryData} {
			_ = p.as(filepath.Join(p.bin, "pg_ctl"), "-D", d, "-m", "immediate", "stop").Run()
		}
	})
	return p
}

// DSN names both servers; a client that wants to write connects to
// whichever is the primary (target_session_attrs=read-write).
func (p *PostgresPair) DSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		p.PrimaryPort, p.StandbyPort, database)
}

// AdminDSN is the primary's, for creating databases.
func (p *PostgresPair) AdminDSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.PrimaryPort)
}

// StopPrimary stops the primary as a crash would.
func (p *PostgresPair) StopPrimary() {
	p.t.Helper()
	p.run("pg_ctl", "-D", p.primaryData, "-m", "immediate", "stop")
}

// Promote makes the standby the primary.
func (p *PostgresPair) Promote() {
	p.t.Helper()
	p.run("pg_ctl", "-D", p.standbyData, "-w", "promote")
}

func (p *PostgresPair) ctl(data string, port int, action string) {
	p.t.Helper()
	p.run("pg_ctl", "-D", data, "-l", data+".log", "-w", "-o", fmt.Sprintf("-p %d", port), action)
}

func (p *PostgresPair) run(tool string, args ...string) {
	p.t.Helper()
	if out, err := p.as(filepath.Join(p.bin, tool), args...).CombinedOutput(); err != nil {
		logs, _ := os.ReadFile(filepath.Join(p.dir, "primary.log"))
		p.t.Fatalf("%s %s: %v\n%s\n%s", tool, strings.Join(args, " "), err, out, logs)
	}
}

func (p *PostgresPair) as(path string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (p *PostgresPair) appendConf(data, text string) {
	p.t.Helper()
	p.appendFile(filepath.Join(data, "postgresql.conf"), text)
}

func (p *PostgresPair) appendHBA(data, text string) {
	p.t.Helper()
	p.appendFile(filepath.Join(data, "pg_hba.conf"), text)
}

func (p *PostgresPair) appendFile(path, text string) {
	p.t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		p.t.Fatal(err)
	}
}
