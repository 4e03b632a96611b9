package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

const rulesFile = "../../deploy/prometheus/cardvault-rules.yml"

// A scrape of a running server, on the metrics listener, under traffic
// that creates, replays, reveals and is refused: every family an alert
// rule names is there, the HSM, store and audit families say what the
// traffic did, the API listener no longer serves /metrics, and no label
// carries an account or card id.
func TestMetricsListenerServesWhatTheRulesName(t *testing.T) {
	maddr := freeAddr(t)
	jv := newServedVault(t, []string{"cards:write", "cards:read", "cards:reveal"},
		envMetricsListen+"="+maddr, envPerCard+"=1")
	if r := jv.do(t, "GET", jv.base+"/metrics", nil, nil); r.status != 404 {
		t.Fatalf("the API listener still serves /metrics: %d", r.status)
	}
	accts := jv.base + "/api/v1/jiko-accounts/"
	body := map[string]any{"public_key": rsaPEM(t, 4096, 65537, false, false)}
	first := jv.post(t, accts+"acct-metrics/virtual-cards", body, map[string]string{"x-jiko-idempotency": "m-1"})
	again := jv.post(t, accts+"acct-metrics/virtual-cards", body, map[string]string{"x-jiko-idempotency": "m-1"})
	if first.status != 201 || again.status != 201 {
		t.Fatalf("creates: %d %s / %d", first.status, first.body, again.status)
	}
	cardID := regexp.MustCompile(`"card_id":"([^"]+)"`).FindStringSubmatch(first.body)[1]
	read := func() int {
		return jv.post(t, accts+"acct-metrics/virtual-cards/"+cardID, map[string]any{"public_key": rsaPEM(t, 4096, 65537, false, false)}, nil).status
	}
	if s := read(); s != 200 {
		t.Fatalf("first reveal: %d", s)
	}
	if s := read(); s != 429 {
		t.Fatalf("a reveal past the card's budget of 1: %d", s)
	}

	raw, families := scrape(t, "http://"+maddr+"/metrics")
	if t.Failed() {
		return
	}
	for _, name := range ruleMetricNames(t) {
		if families[name] == nil {
			t.Errorf("the alert rules name %s; the scrape has no such family", name)
		}
	}
	for _, name := range dashboardMetricNames(t) {
		// PKCS#11 errors are labelled by return code, so the family is
		// born with the first error; this traffic has none.
		if families[name] == nil && name != "cardvault_hsm_pkcs11_errors_total" {
			t.Errorf("the dashboard charts %s; the scrape has no such family", name)
		}
	}
	want := []struct {
		family  string
		labels  map[string]string
		atLeast float64
	}{
		{"cardvault_hsm_up", nil, 1},
		{"cardvault_hsm_session_slots", nil, 2},
		{"cardvault_hsm_operation_duration_seconds", map[string]string{"operation": "seal", "outcome": "ok"}, 1},
		{"cardvault_store_commit_duration_seconds", map[string]string{"store": "sqlite", "result": "ok"}, 1},
		{"cardvault_store_group_commit_size", map[string]string{"store": "sqlite"}, 1},
		{"cardvault_audit_entries_written_total", map[string]string{"store": "sqlite"}, 3},
		{"cardvault_idempotent_replays_total", map[string]string{"surface": "POST /api/v1/jiko-accounts/:account_id/virtual-cards"}, 1},
		{"cardvault_refusals_total", map[string]string{"rule": "card_id"}, 1},
		{"cardvault_key_active_version", map[string]string{"purpose": "card-kek"}, 1},
		{"cardvault_hsm_info", nil, 1},
	}
	for _, w := range want {
		if got := sumOf(families[w.family], w.labels); got < w.atLeast {
			t.Errorf("%s%v = %v, want at least %v", w.family, w.labels, got, w.atLeast)
		}
	}
	for _, id := range []string{cardID, "acct-metrics", jv.token} {
		if strings.Contains(raw, id) {
			t.Errorf("the scrape carries %q", id)
		}
	}
	if out := os.Getenv("CARDVAULT_TEST_SCRAPE_OUT"); out != "" {
		os.WriteFile(out, []byte(raw), 0o644)
	}
}

// The rules check and their unit tests pass under promtool, Debian's
// prometheus package.
func TestPrometheusRules(t *testing.T) {
	promtool := testenv.RequireCommand(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "cardvault-rules.yml"},
		{"test", "rules", "cardvault-rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../deploy/prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(t *testing.T, url string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return string(b), families
}

// ruleMetricNames are the families the alert rules' expressions read.
func ruleMetricNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	out := metricNames(exprs)
	if len(out) < 8 {
		t.Fatalf("only %d metric names in %s", len(out), rulesFile)
	}
	return out
}

// metricNames are the cardvault families PromQL expressions read, with a
// histogram's _bucket, _count and _sum read as the histogram.
func metricNames(exprs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`\bcardvault_[a-z0-9_]+`).FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				m = strings.TrimSuffix(m, suffix)
			}
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// dashboardMetricNames are the families the Grafana dashboard charts.
func dashboardMetricNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/prometheus/cardvault-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	return metricNames(exprs)
}

// sumOf adds the values (a histogram's count) of a family's metrics whose
// labels include labels.
func sumOf(f *dto.MetricFamily, labels map[string]string) float64 {
	if f == nil {
		return 0
	}
	total := 0.0
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}
