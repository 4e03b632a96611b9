package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/cardvault/cardvault/bench"
	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/httpapi"
	"github.com/cardvault/cardvault/internal/delayproxy"
	"github.com/cardvault/cardvault/sqlstore"
	"github.com/cardvault/cardvault/vault"
)

// benchCmd is `cardvault bench`: it serves the vault on a loopback port
// over the configured token and a throwaway SQLite database, drives it
// with concurrent clients, and reports each operation against its crypto
// bound.
type benchCmd struct {
	Clients       int           `default:"16" help:"concurrent clients (1 to 256)"`
	Duration      time.Duration `default:"10s" help:"time per phase: each operation's bound, and its service run (1s to 10m)"`
	JSON          bool          `name:"json" help:"print one JSON object per operation instead of a table"`
	Ops           string        `placeholder:"OP,…" help:"comma-separated operations to run; all when empty"`
	CPUProfile    string        `name:"cpuprofile" placeholder:"PREFIX" help:"write a CPU profile of each operation's service phase to PREFIX.<operation>.prof"`
	TokenRestarts int           `name:"token-restarts" help:"instead of the operations, run imports and checked secure views for --duration while the token is restarted underneath this many times"`
	HangUps       int           `name:"hang-ups" help:"instead of the operations, run imports and checked secure views for --duration while this many bursts of 32 clients hang up mid-request (with --token-restarts too: the restarts come first)"`
	FaultKeys     int           `name:"fault-keys" default:"300" help:"with --token-restarts or --hang-ups: real RSA-2048 device keys to make, one per checked reveal"`
	Scrape        string        `placeholder:"FILE" help:"after the run, write the server's /metrics, as the load left it, to this file"`
	DB            string        `name:"db" placeholder:"URL" help:"the database to serve on: a postgres:// URL (an empty database: the bench writes accounts and cards), or by default a throwaway SQLite file"`
	DBDelay       time.Duration `name:"db-delay" help:"with --db: add this delay each way between the vault and PostgreSQL, through a TCP proxy, as a network would (0 to 50ms)"`
	Target        string        `placeholder:"URL,…" help:"instead of serving a vault of its own, drive running servers: comma-separated base URLs (replicas, taken in turn), served over the configured token (for the bounds) with budgets no bench reaches"`
	Cards         int           `help:"before the operations, issue this many cards into the bench's own vault through the token and the store (not HTTP), to measure the vault as it grows (0 to 5000000)"`
	TokenFile     string        `name:"token-file" placeholder:"FILE" help:"with --target: a file holding the bearer token of an API token with every scope"`

	tokenSettings     `embed:"" group:"token"`
	auditSettings     `embed:"" group:"database"`
	transcriptSetting `embed:"" group:"ceremony"`
	vaultSettings     `embed:"" group:"issuing and budgets"`
	// DBPasswordFile is the bench database's password, as serve's.
	DBPasswordFile string `name:"db-password-file" env:"CARDVAULT_DB_PASSWORD_FILE" placeholder:"FILE" group:"database" help:"file holding the PostgreSQL password, when it is not in the URL"`
}

func (b *benchCmd) Run(in *invocation) error {
	ctx, stdout, stderr, log := in.ctx, in.stdout, in.stderr, in.log
	clients, duration, asJSON, only, cpuProfile, restarts, hangUps, faultKeys, scrape, db, dbDelay, target, cards, tokenFile := &b.Clients, &b.Duration, &b.JSON, &b.Ops, &b.CPUProfile, &b.TokenRestarts, &b.HangUps, &b.FaultKeys, &b.Scrape, &b.DB, &b.DBDelay, &b.Target, &b.Cards, &b.TokenFile
	if *clients < 1 || *clients > 256 {
		return fmt.Errorf("--clients %d: want 1 to 256", *clients)
	}
	if *duration < time.Second || *duration > 10*time.Minute {
		return fmt.Errorf("--duration %s: want 1s to 10m", *duration)
	}
	if *restarts < 0 || *restarts > 10 || *faultKeys < 0 || *faultKeys > 5000 {
		return fmt.Errorf("--token-restarts %d --fault-keys %d: want 0 to 10 restarts and 0 to 5000 keys", *restarts, *faultKeys)
	}
	if *dbDelay < 0 || *dbDelay > 50*time.Millisecond || (*dbDelay > 0 && *db == "") {
		return fmt.Errorf("--db-delay %s: want 0 to 50ms, with --db", *dbDelay)
	}
	if *hangUps < 0 || *hangUps > 100 {
		return fmt.Errorf("--hang-ups %d: want 0 to 100 bursts", *hangUps)
	}
	if *restarts > 0 && !faultInjection {
		return fmt.Errorf("--token-restarts: %w", errNoFaultInjection)
	}
	if (*target == "") != (*tokenFile == "") || (*target != "" && (*db != "" || *restarts > 0)) {
		return fmt.Errorf("--target and --token-file go together, without --db or --token-restarts")
	}
	if *cards < 0 || *cards > 5_000_000 || (*cards > 0 && *target != "") {
		return fmt.Errorf("--cards %d: want 0 to 5000000, in the bench's own vault (not with --target)", *cards)
	}

	var (
		m       *hsm.Module
		targets []string
		token   string
		dbName  string
		vaultOf *ownVault // the bench's own, when it serves one
		err     error
	)
	if *target != "" {
		if targets, token, err = benchTargets(*target, *tokenFile); err != nil {
			return err
		}
		// The servers' keys are theirs: the bench reads them for the
		// bounds and never runs a ceremony on them.
		if m, err = b.tokenSettings.open(log, nil); err != nil {
			return err
		}
		defer m.Close()
		dbName = fmt.Sprintf("%d running server(s)", len(targets))
	} else {
		if m, err = b.openKeyedHSM(in); err != nil {
			return err
		}
		defer m.Close()
		own, err := b.serveOwnVault(ctx, m, stderr)
		if err != nil {
			return err
		}
		defer own.stop()
		targets, token, dbName, vaultOf = []string{own.url}, own.token, own.dbName, own
	}

	api := bench.NewClient(targets, token, *clients)
	defer api.Close()
	env := bench.NewEnv(api, m)
	var seeding *bench.Seeding
	if *cards > 0 {
		if seeding, err = seedOwnVault(ctx, vaultOf, env, m, *cards, stderr); err != nil {
			return err
		}
	}
	if *restarts > 0 || *hangUps > 0 {
		faults := bench.Faults{Restarts: *restarts, Restart: func() error { return restartUnderneath(m) }, HangUps: *hangUps}
		rep, err := bench.RunFaults(ctx, env, *clients, *duration, faults, *faultKeys, stderr)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(rep)
		}
		bench.WriteFaultReport(stdout, rep)
		return nil
	}
	ops, err := selectOps(bench.Ops(env, runtime.NumCPU()), *only)
	if err != nil {
		return err
	}
	limits, err := bench.MeasureLimits(ctx, env, ops, *clients, runtime.NumCPU(), *duration, stderr)
	if err != nil {
		return err
	}
	var profile bench.Profiler
	if *cpuProfile != "" {
		profile = cpuProfiler(*cpuProfile)
	}
	results, err := bench.Run(ctx, ops, limits, *clients, *duration, stderr, profile)
	if err != nil {
		return err
	}
	for i := range results {
		results[i].Seeding = seeding
	}
	if *scrape != "" {
		if err := saveScrape(ctx, targets[0]+"/metrics", *scrape); err != nil {
			return fmt.Errorf("--scrape: %w", err)
		}
	}
	if *asJSON {
		return bench.WriteJSON(stdout, results)
	}
	if seeding != nil {
		dbName += fmt.Sprintf(", %d cards seeded (%.0f bytes of database each)", seeding.Cards, seeding.DBBytesPerCard)
	}
	fmt.Fprintf(stdout, "cardvault bench: %d clients, %s per phase, %s, token %q, %d CPUs\n\n", *clients, *duration, dbName, m.Label(), runtime.NumCPU())
	if err := bench.WriteTable(stdout, results); err != nil {
		return err
	}
	return bench.WriteLimits(stdout, limits)
}

// seedOwnVault issues n cards into the bench's own vault through its
// service, then verifies the audit trail they left, and reports both.
func seedOwnVault(ctx context.Context, own *ownVault, env *bench.Env, key *hsm.Module, n int, stderr io.Writer) (*bench.Seeding, error) {
	caller := vault.Caller{Name: "bench-seed"}
	issue := func(ctx context.Context, i int) error {
		_, err := own.svc.IssueUnseen(ctx, caller, env.SeedOwner(i))
		return err
	}
	s, err := bench.Seed(ctx, n, 4*runtime.NumCPU(), issue, own.store.Bytes, stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "bench: seeded %d cards at %.0f/s; the database holds %d bytes, %.0f per card\n", s.Cards, s.Rate, s.DBBytes, s.DBBytesPerCard)
	start := time.Now()
	rep, err := own.store.VerifyAudit(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("audit verify: %w", err)
	}
	if len(rep.Breaks) > 0 {
		return nil, fmt.Errorf("audit verify: the seeded trail is broken: %v", rep.Breaks[0])
	}
	s.AuditEntries, s.AuditVerifyRate = rep.Entries, float64(rep.Entries)/time.Since(start).Seconds()
	fmt.Fprintf(stderr, "bench: audit verify: %d entries in %d chains at %.0f/s\n", rep.Entries, rep.Chains, s.AuditVerifyRate)
	return &s, nil
}

// benchTargets parses --target's base URLs and reads --token-file.
func benchTargets(list, tokenFile string) ([]string, string, error) {
	var targets []string
	for _, t := range strings.Split(list, ",") {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, "", fmt.Errorf("--target %q: want base URLs such as http://127.0.0.1:8080", t)
		}
		targets = append(targets, strings.TrimSuffix(t, "/"))
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, "", fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, "", fmt.Errorf("--token-file %s: empty; it holds what `cardvault token create` printed", tokenFile)
	}
	return targets, token, nil
}

// ownVault is the vault the bench serves itself: its URL and token, the
// service and store behind it (for seeding), and how to stop it all.
type ownVault struct {
	url, token, dbName string
	svc                *vault.Service
	store              *sqlstore.Store
	stop               func()
}

// serveOwnVault serves the bench's own vault on a new SQLite file, or on
// the PostgreSQL database db names (through a delaying proxy if delay is
// set).
func (b *benchCmd) serveOwnVault(ctx context.Context, m *hsm.Module, stderr io.Writer) (*ownVault, error) {
	db, delay := b.DB, b.DBDelay
	dir, err := os.MkdirTemp("", "cardvault-bench-")
	if err != nil {
		return nil, err
	}
	stops := []func(){func() { os.RemoveAll(dir) }}
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	dsn, dbName := "sqlite:"+filepath.Join(dir, "bench.db"), "SQLite"
	if db != "" {
		if !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
			stopAll()
			return nil, fmt.Errorf("--db: want a postgres:// URL")
		}
		dsn, dbName = db, "PostgreSQL"
		if delay > 0 {
			proxied, stopProxy, err := delayDSN(dsn, delay)
			if err != nil {
				stopAll()
				return nil, err
			}
			stops = append(stops, stopProxy)
			dsn, dbName = proxied, fmt.Sprintf("PostgreSQL, %s each way", delay)
		}
	}
	v, err := b.serveBench(ctx, m, databaseSettings{DB: dsn, PasswordFile: b.DBPasswordFile}, dir, stderr)
	if err != nil {
		stopAll()
		return nil, err
	}
	stops = append(stops, v.stop)
	v.dbName, v.stop = dbName, stopAll
	return v, nil
}

// errNoFaultInjection refuses fault injection in a binary built without it.
var errNoFaultInjection = errors.New("this binary injects no faults; build it with -tags faultinject (scripts/bench.sh does)")

// saveScrape writes one scrape of the server's metrics to path.
func saveScrape(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, body, 0o644)
}

// cpuProfiler writes each service phase's CPU profile to prefix.<op>.prof.
func cpuProfiler(prefix string) bench.Profiler {
	return func(op string) (func(), error) {
		f, err := os.Create(prefix + "." + op + ".prof")
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		return func() { pprof.StopCPUProfile(); f.Close() }, nil
	}
}

// openKeyedHSM opens the configured token, running the init ceremony
// first if any key is missing. The bench's database is new on every run,
// so it holds no key records: the bench's module is unpinned, which is
// the one place the vault runs so (never `serve`).
func (b *benchCmd) openKeyedHSM(in *invocation) (*hsm.Module, error) {
	ctx, stderr, log := in.ctx, in.stderr, in.log
	m, err := b.tokenSettings.open(log, nil)
	if err != nil {
		return nil, err
	}
	keys, err := m.Keys(ctx)
	if err != nil {
		m.Close()
		return nil, err
	}
	plan := initPlan{has: map[hsm.Purpose]bool{}}
	for _, k := range keys {
		plan.has[k.Purpose] = true
	}
	if plan.missing() == 0 {
		return m, nil
	}
	m.Close()
	fmt.Fprintln(stderr, "bench: keys are missing; running the init ceremony")
	// The transcript goes where an init's would. The bench's databases
	// are new on every run, so the key records and the ceremony's audit
	// entry go to one that is thrown away: the transcript is the record.
	dir, err := os.MkdirTemp("", "cardvault-bench-init-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	initCmd := &ceremonyInitCmd{Backup: "vendor"}
	initCmd.Operator, initCmd.transcriptSetting, initCmd.tokenSettings = operatorName(), b.transcriptSetting, b.tokenSettings
	initCmd.DB, initCmd.CheckpointEvery, initCmd.CheckpointInterval = "sqlite:"+filepath.Join(dir, "init.db"), b.CheckpointEvery, b.CheckpointInterval
	if err := concluded(&invocation{ctx: ctx, stdin: in.stdin, stdout: stderr, stderr: stderr, log: log}, initCmd.run); err != nil {
		return nil, err
	}
	return b.tokenSettings.open(log, nil)
}

// serveBench serves the vault on a loopback port, over the request path's
// handle on the bench's module and the database
// dsn names (a new SQLite file by default), with tokens in dir, with budgets no bench reaches (the bench reveals one
// card per client many times over), with a bearer token of every scope.
func (b *benchCmd) serveBench(ctx context.Context, admin *hsm.Module, db databaseSettings, dir string, stderr io.Writer) (*ownVault, error) {
	m := hsm.ServingOf(admin)
	every := b.CheckpointEvery
	cfg := b.vaultConfig()
	unlimited := vault.Budget{Window: time.Second, PerCard: 1 << 30, PerDevice: 1 << 30, PerCaller: 1 << 30}
	cfg.Reveals, cfg.PINAttempts, cfg.Lookups, cfg.Imports, cfg.Verifications = unlimited, unlimited, unlimited, unlimited, unlimited
	store, err := db.open(ctx)
	if err != nil {
		return nil, err
	}
	store.UseAuditKey(m, every)
	store.PruneInBackground()
	ms := instrument(m, store)
	cfg.Observer = ms.Vault()
	served := false // until then, every return closes the store
	defer func() {
		if !served {
			store.Close()
		}
	}()
	svc, err := vault.NewService(m, store, cfg)
	if err != nil {
		return nil, err
	}
	token, line, err := httpapi.NewToken("bench", httpapi.Scopes)
	if err != nil {
		return nil, err
	}
	tokensFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokensFile, []byte(line+"\n"), 0o600); err != nil {
		return nil, err
	}
	tokens, err := httpapi.LoadTokens(tokensFile, nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// The service logs as serve does, one JSON line per request, so that
	// the bench pays for logging; the lines are dropped, but errors (a
	// 5xx's cause) reach stderr, where a failed run needs them.
	logger := slog.New(slog.NewMultiHandler(slog.NewJSONHandler(io.Discard, nil),
		slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	hs := newHTTPServer(logger, m, store, svc, tokens, nil, ms.Registry(), false)
	go hs.Serve(ln)
	served = true
	stop := func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
		store.Close()
	}
	return &ownVault{url: "http://" + ln.Addr().String(), token: token, svc: svc, store: store, stop: stop}, nil
}

// selectOps keeps the operations named in a comma-separated list, in the
// bench's order; an empty list keeps them all.
func selectOps(all []bench.Op, list string) ([]bench.Op, error) {
	if list == "" {
		return all, nil
	}
	want := strings.Split(list, ",")
	var names []string
	var out []bench.Op
	for _, op := range all {
		names = append(names, op.Name())
		if slices.Contains(want, op.Name()) {
			out = append(out, op)
		}
	}
	if len(out) != len(want) {
		return nil, fmt.Errorf("--ops %q: want some of %s", list, strings.Join(names, ","))
	}
	return out, nil
}

// delayDSN starts a delaying proxy to the PostgreSQL server dsn names and
// returns dsn pointed at it.
func delayDSN(dsn string, delay time.Duration) (string, func(), error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" || strings.Contains(u.Host, ",") {
		return "", nil, fmt.Errorf("--db-delay: want a postgres:// URL naming one host")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	p, err := delayproxy.Start(host, delay)
	if err != nil {
		return "", nil, err
	}
	u.Host = p.Addr()
	return u.String(), func() { p.Close() }, nil
}
