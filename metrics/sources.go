package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/sqlstore"
)

// scrapeTimeout bounds what a scrape asks the token and the database.
const scrapeTimeout = 2 * time.Second

var (
	slotsInUseDesc = prometheus.NewDesc("cardvault_hsm_session_slots_in_use",
		"HSM operations holding a session slot now.", nil, nil)
	slotsDesc = prometheus.NewDesc("cardvault_hsm_session_slots",
		"Session slots: the most HSM operations that run at once.", nil, nil)
	reconnectsDesc = prometheus.NewDesc("cardvault_hsm_reconnects_total",
		"Times the token connection was rebuilt after a lost session or login.", nil, nil)
	upDesc = prometheus.NewDesc("cardvault_hsm_up",
		"1 when the token answered a probe at scrape time, else 0.", nil, nil)
	infoDesc = prometheus.NewDesc("cardvault_hsm_info",
		"The token in use and its probed profile (docs/hsm.md), always 1.", []string{"token_label", "token_serial", "profile"}, nil)
	keyVersionDesc = prometheus.NewDesc("cardvault_key_active_version",
		"The key version new work uses, by purpose.", []string{"purpose"}, nil)
	lagDesc = prometheus.NewDesc("cardvault_audit_entries_since_checkpoint",
		"Committed audit entries no HSM checkpoint covers yet, by this process's chain (0 to 63).", []string{"chain"}, nil)
	ceremonyDesc = prometheus.NewDesc("cardvault_ceremony_runs_total",
		"Key ceremonies in the audit trail, by ceremony and result: ceremonies run as their own processes, and the trail is where the server learns of them.", []string{"ceremony", "result"}, nil)
	scrapeErrorsDesc = prometheus.NewDesc("cardvault_scrape_errors",
		"1 when a scrape-time read failed, by source (hsm, store).", []string{"source"}, nil)
)

// Token is what a scrape reads of the token: the request path's handle
// (hsm.Serving) has it.
type Token interface {
	SlotsInUse() int
	Slots() int
	Reconnects() int64
	Probe(ctx context.Context) error
	Token(ctx context.Context) (hsm.TokenInfo, error)
	ActiveVersion(ctx context.Context, p hsm.Purpose) (uint32, error)
}

// WatchHSM adds the token's scrape-time families: slots, reconnects,
// whether it answers, its profile and the active key versions.
func (s *Set) WatchHSM(m Token) { s.reg.MustRegister(hsmCollector{m}) }

type hsmCollector struct{ m Token }

func (c hsmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{slotsInUseDesc, slotsDesc, reconnectsDesc, upDesc, infoDesc, keyVersionDesc} {
		ch <- d
	}
}

func (c hsmCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(slotsInUseDesc, prometheus.GaugeValue, float64(c.m.SlotsInUse()))
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(c.m.Slots()))
	ch <- prometheus.MustNewConstMetric(reconnectsDesc, prometheus.CounterValue, float64(c.m.Reconnects()))
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	up := 0.0
	if c.m.Probe(ctx) == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up)
	if up == 0 {
		return
	}
	if tok, err := c.m.Token(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, tok.Label, tok.Serial, tok.Profile)
	}
	for _, p := range append(append([]hsm.Purpose{}, hsm.Purposes...), hsm.ImportedPurposes...) {
		if v, err := c.m.ActiveVersion(ctx, p); err == nil {
			ch <- prometheus.MustNewConstMetric(keyVersionDesc, prometheus.GaugeValue, float64(v), string(p))
		}
	}
}

// WatchStore adds the store's scrape-time families: checkpoint lag and
// the ceremonies in the trail.
func (s *Set) WatchStore(st *sqlstore.Store) { s.reg.MustRegister(storeCollector{st}) }

type storeCollector struct{ st *sqlstore.Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- ceremonyDesc
	ch <- scrapeErrorsDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	for i, lag := range c.st.CheckpointLag() {
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), strconv.Itoa(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	runs, err := c.st.CeremonyRuns(ctx)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorsDesc, prometheus.GaugeValue, failed, "store")
	for k, n := range runs {
		ch <- prometheus.MustNewConstMetric(ceremonyDesc, prometheus.CounterValue, float64(n), k[0], k[1])
	}
}
