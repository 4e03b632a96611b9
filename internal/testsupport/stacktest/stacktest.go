// Package stacktest starts the vault's container stack for tests, with
// testcontainers-go: PostgreSQL, the one-shot setup service (token and key
// ceremony) and vault replicas, from the images scripts/images.sh builds.
// No image is ever pulled.
package stacktest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
	"github.com/google/uuid"
	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The images the stack runs; scripts/images.sh builds them where no
// registry can be reached.
const (
	PostgresImage = "postgres:15-bookworm"
	VaultImage    = "cardvault:dev"
)

// Test-only secrets, handed to the containers as files.
const (
	postgresPassword = "stack-test-password"
	hsmPIN           = "stack-test-user-pin"
	hsmSOPIN         = "stack-test-so-pin"
)

// Require skips the test, saying so, where no Docker engine exists, and
// otherwise requires the stack's images (failing under CI without them).
func Require(t *testing.T, images ...string) {
	t.Helper()
	// The reaper's image cannot be pulled here; every container is
	// removed by its test's cleanup instead.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	ctx := context.Background()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = cli.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		t.Skipf("no Docker engine, so no container tests: %v", err)
	}
	defer cli.Close()
	for _, image := range images {
		if _, err := cli.ImageInspect(ctx, image); err != nil {
			testenv.Require(t, "image "+image+" (scripts/images.sh builds it)", err)
		}
	}
}

// Network makes a private network for one test.
func Network(t *testing.T) *testcontainers.DockerNetwork {
	t.Helper()
	nw, err := network.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Remove(context.Background()) })
	return nw
}

// Postgres is a PostgreSQL container.
type Postgres struct {
	*testcontainers.DockerContainer
	// DSN reaches it from the host, as the superuser.
	DSN string
	// InnerDSN reaches it from the network, as the superuser.
	InnerDSN string
}

// StartPostgres starts PostgreSQL on nw, reachable there as "postgres".
// Its host port is fixed for its life, so a restart keeps the DSN.
func StartPostgres(t *testing.T, nw *testcontainers.DockerNetwork) *Postgres {
	t.Helper()
	port := testenv.FreePort(t)
	c, err := testcontainers.Run(context.Background(), PostgresImage,
		testcontainers.WithEnv(map[string]string{"POSTGRES_PASSWORD": postgresPassword}),
		testcontainers.WithExposedPorts("5432/tcp"),
		fixedPort("5432/tcp", port),
		network.WithNetwork([]string{"postgres"}, nw),
		testcontainers.WithWaitStrategy(wait.ForLog("database system is ready to accept connections").WithStartupTimeout(60*time.Second)),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	return &Postgres{
		DockerContainer: c,
		DSN:             fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", postgresPassword, port),
		InnerDSN:        fmt.Sprintf("postgres://postgres:%s@postgres:5432/postgres?sslmode=disable", postgresPassword),
	}
}

// Stack is a token volume set up by the setup service, an API token, and
// the vault replicas started on it.
type Stack struct {
	t        *testing.T
	nw       *testcontainers.DockerNetwork
	volume   string
	database string // the replicas' DSN, on the network
	Token    string
	Replicas []*Replica
}

// Replica is one vault container.
type Replica struct {
	*testcontainers.DockerContainer
	Base string // http://127.0.0.1:port, fixed across restarts
}

// StartStack runs the setup service on a fresh token volume, creates an
// API token with scopes, and starts n replicas on database (a DSN on nw).
func StartStack(t *testing.T, nw *testcontainers.DockerNetwork, database string, n int, scopes ...string) *Stack {
	t.Helper()
	s := &Stack{t: t, nw: nw, volume: "cardvault-tokens-" + uuid.NewString()[:8], database: database}
	t.Cleanup(func() { removeVolume(s.volume) })
	out := s.oneShot("setup", []string{"sh", "-c",
		"cardvault-setup && cardvault token create --name stack-test --scopes " + strings.Join(scopes, ",")})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	s.Token = strings.TrimSpace(lines[len(lines)-1])
	if !strings.Contains(out, "created, verified") || len(s.Token) < 20 {
		t.Fatalf("setup service:\n%s", out)
	}
	for range n {
		s.Replicas = append(s.Replicas, s.startReplica())
	}
	return s
}

// secrets are the files every vault container reads its secrets from.
func secrets() []testcontainers.ContainerFile {
	file := func(name, value string) testcontainers.ContainerFile {
		return testcontainers.ContainerFile{Reader: strings.NewReader(value + "\n"), ContainerFilePath: "/run/secrets/" + name, FileMode: 0o444}
	}
	return []testcontainers.ContainerFile{file("hsm_pin", hsmPIN), file("hsm_so_pin", hsmSOPIN), file("db_password", postgresPassword)}
}

func (s *Stack) env() map[string]string {
	return map[string]string{
		"CARDVAULT_PKCS11_PIN_FILE":  "/run/secrets/hsm_pin",
		"CARDVAULT_SO_PIN_FILE":      "/run/secrets/hsm_so_pin",
		"CARDVAULT_DB":               s.database,
		"CARDVAULT_DB_PASSWORD_FILE": "/run/secrets/db_password",
		"CARDVAULT_API_TOKENS_FILE":  "/var/lib/cardvault/tokens/api-tokens",
	}
}

// oneShot runs the vault image with cmd as its entrypoint until it exits
// 0, and returns its output.
func (s *Stack) oneShot(name string, cmd []string) string {
	s.t.Helper()
	ctx := context.Background()
	c, err := testcontainers.Run(ctx, VaultImage,
		testcontainers.WithEntrypoint(cmd...),
		testcontainers.WithEnv(s.env()),
		testcontainers.WithFiles(secrets()...),
		testcontainers.WithMounts(testcontainers.VolumeMount(s.volume, "/var/lib/cardvault/tokens")),
		network.WithNetwork(nil, s.nw),
		testcontainers.WithWaitStrategy(wait.ForExit().WithExitTimeout(120*time.Second)),
	)
	testcontainers.CleanupContainer(s.t, c)
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	out := logs(s.t, c)
	state, err := c.State(ctx)
	if err != nil || state.ExitCode != 0 {
		s.t.Fatalf("%s exited %v (%v):\n%s", name, state, err, out)
	}
	return out
}

func (s *Stack) startReplica() *Replica {
	s.t.Helper()
	port := testenv.FreePort(s.t)
	c, err := testcontainers.Run(context.Background(), VaultImage,
		testcontainers.WithEnv(s.env()),
		testcontainers.WithFiles(secrets()...),
		testcontainers.WithMounts(testcontainers.VolumeMount(s.volume, "/var/lib/cardvault/tokens")),
		testcontainers.WithExposedPorts("8080/tcp"),
		fixedPort("8080/tcp", port),
		network.WithNetwork(nil, s.nw),
		testcontainers.WithWaitStrategy(wait.ForLog("cardvault serving").WithStartupTimeout(60*time.Second)),
	)
	testcontainers.CleanupContainer(s.t, c)
	if err != nil {
		s.t.Fatalf("start replica: %v", err)
	}
	r := &Replica{DockerContainer: c, Base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	WaitReady(s.t, r.Base, 30*time.Second)
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("replica %s log:\n%s", r.Base, logs(s.t, c))
		}
	})
	return r
}

// Kill kills a container at once, as a crash would: no SIGTERM, no drain.
func Kill(t *testing.T, c *testcontainers.DockerContainer) {
	t.Helper()
	cli, err := testcontainers.NewDockerClientWithOpts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ContainerKill(context.Background(), c.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill: %v", err)
	}
}

// WaitReady polls base's /readyz until it answers 200.
func WaitReady(t *testing.T, base string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %v", base, within)
}

func logs(t *testing.T, c *testcontainers.DockerContainer) string {
	r, err := c.Logs(context.Background())
	if err != nil {
		return fmt.Sprintf("(no logs: %v)", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// fixedPort binds a container port to a host port on loopback, so it
// survives a restart of the container.
func fixedPort(containerPort string, hostPort int) testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		hc.PortBindings = mobynet.PortMap{mobynet.MustParsePort(containerPort): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: fmt.Sprint(hostPort)}}}
	})
}

func removeVolume(name string) {
	cli, err := testcontainers.NewDockerClientWithOpts(context.Background())
	if err != nil {
		return
	}
	defer cli.Close()
	cli.VolumeRemove(context.Background(), name, client.VolumeRemoveOptions{Force: true})
}

// Database creates a fresh database on p and returns its DSN from the
// host and from the network.
func (p *Postgres) Database(t *testing.T) (host, inner string) {
	t.Helper()
	host = testenv.CreateDatabase(t, p.DSN)
	u, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}
	iu, _ := url.Parse(p.InnerDSN)
	iu.Path = u.Path
	return host, iu.String()
}
