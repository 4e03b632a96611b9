// Package metrics is cardvault's Prometheus instrumentation: one registry
// holding the HTTP, HSM, store, budget and audit families, and the
// observers the hsm, sqlstore and vault packages report to.
//
// No label ever carries a card id, an account id, a device id, a caller's
// token or a key value: labels are operation names, outcomes, PKCS#11
// return-code names, store kinds, surfaces and purposes, each from a
// closed set the code names.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cardvault/cardvault/vault"
)

// Set is the registry and every family cardvault exports.
type Set struct {
	reg *prometheus.Registry

	hsmCalls    *prometheus.HistogramVec
	hsmSlotWait prometheus.Histogram
	p11Errors   *prometheus.CounterVec

	commits      *prometheus.HistogramVec
	commitSize   *prometheus.HistogramVec
	auditWritten *prometheus.CounterVec
	checkpoints  *prometheus.CounterVec

	refusals     *prometheus.CounterVec
	verified     *prometheus.CounterVec
	replays      *prometheus.CounterVec
	auditDropped prometheus.Counter
}

// latencyBuckets span 100 µs to about 6.5 s: a token operation to a
// call timeout.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// New makes the registry with Go's and the process's collectors.
func New() *Set {
	s := &Set{reg: prometheus.NewRegistry()}
	s.hsmCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cardvault_hsm_operation_duration_seconds",
		Help:    "HSM operations by operation and outcome (ok, refused: the input's fault, unavailable, busy: no session slot within the call timeout, canceled), including the wait for a session slot.",
		Buckets: latencyBuckets,
	}, []string{"operation", "outcome"})
	s.hsmSlotWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "cardvault_hsm_session_slot_wait_seconds",
		Help:    "Time HSM operations waited for a session slot.",
		Buckets: latencyBuckets,
	})
	s.p11Errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_hsm_pkcs11_errors_total",
		Help: "PKCS#11 calls that returned an error, by return-code name (CKR_...).",
	}, []string{"code"})
	s.commits = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cardvault_store_commit_duration_seconds",
		Help:    "Database commits by store (sqlite, postgres) and result: the transaction's work and its durable commit.",
		Buckets: latencyBuckets,
	}, []string{"store", "result"})
	s.commitSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cardvault_store_group_commit_size",
		Help:    "Write transactions carried by one database commit, by store: SQLite commits a group at once, PostgreSQL one at a time.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	}, []string{"store"})
	s.auditWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_audit_entries_written_total",
		Help: "Audit entries committed, by store.",
	}, []string{"store"})
	s.checkpoints = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_audit_checkpoints_total",
		Help: "Audit chain checkpoints MACed by the HSM and stored, by store and result.",
	}, []string{"store", "result"})
	s.verified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_card_verifications_total",
		Help: "Card verifications by field (cvv, expiry: POST /v1/cards/{id}/verification; pin: POST /v1/cards/verify_pin) and answer (match, no_match; blocked for a PIN past its try limit): a surge of no_match or blocked is someone guessing.",
	}, []string{"field", "answer"})
	s.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_refusals_total",
		Help: "Requests refused by a budget or rate rule, by surface (the audited action) and the rule's field (card_id, device_id, Authorization).",
	}, []string{"surface", "rule"})
	s.replays = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cardvault_idempotent_replays_total",
		Help: "Requests answered from an earlier answer to the same Idempotency-Key, by surface.",
	}, []string{"surface"})
	// No labels: exported as 0 from the start, so an alert on its
	// increase sees the first failure. The log names the action.
	s.auditDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cardvault_audit_write_failures_total",
		Help: "Refusals whose audit entry could not be written: the refusal still stood, and the failure and its action are logged.",
	})
	s.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.hsmCalls, s.hsmSlotWait, s.p11Errors,
		s.commits, s.commitSize, s.auditWritten, s.checkpoints,
		s.refusals, s.replays, s.auditDropped, s.verified,
	)
	return s
}

// Registry is where the HTTP server's families and the scrape-time
// collectors register, and what /metrics serves.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// HSM is the hsm package's observer.
func (s *Set) HSM() HSMObserver { return HSMObserver{s} }

// HSMObserver implements hsm.Observer.
type HSMObserver struct{ s *Set }

func (o HSMObserver) Call(op, outcome string, took time.Duration) {
	o.s.hsmCalls.WithLabelValues(op, outcome).Observe(took.Seconds())
}

func (o HSMObserver) SlotWait(took time.Duration) { o.s.hsmSlotWait.Observe(took.Seconds()) }

func (o HSMObserver) PKCS11Error(code string) { o.s.p11Errors.WithLabelValues(code).Inc() }

// Store is the sqlstore package's observer for one store kind. Its
// outcome series start at zero, so that a rate or increase sees the
// first failure.
func (s *Set) Store(kind string) StoreObserver {
	for _, result := range []string{"ok", "failed"} {
		s.checkpoints.WithLabelValues(kind, result)
	}
	s.auditWritten.WithLabelValues(kind)
	return StoreObserver{s, kind}
}

// StoreObserver implements sqlstore.Observer.
type StoreObserver struct {
	s    *Set
	kind string
}

func (o StoreObserver) Commit(size int, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	o.s.commits.WithLabelValues(o.kind, result).Observe(took.Seconds())
	if err == nil {
		o.s.commitSize.WithLabelValues(o.kind).Observe(float64(size))
	}
}

func (o StoreObserver) AuditWritten(n int) { o.s.auditWritten.WithLabelValues(o.kind).Add(float64(n)) }

func (o StoreObserver) Checkpoint(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	o.s.checkpoints.WithLabelValues(o.kind, result).Inc()
}

// Vault is the vault package's observer. Its refusal series start at
// zero for every budget rule, so that an alert on their increase sees the
// first refusal.
func (s *Set) Vault() VaultObserver {
	for surface, rules := range vault.BudgetRules {
		for _, rule := range rules {
			s.refusals.WithLabelValues(surface, rule)
		}
	}
	for _, field := range []string{"cvv", "expiry", "pin"} {
		for _, answer := range []string{vault.Match, vault.NoMatch} {
			s.verified.WithLabelValues(field, answer)
		}
	}
	s.verified.WithLabelValues("pin", vault.Blocked)
	return VaultObserver{s}
}

// VaultObserver implements vault.Observer.
type VaultObserver struct{ s *Set }

func (o VaultObserver) Refused(surface, rule string) {
	o.s.refusals.WithLabelValues(surface, rule).Inc()
}

func (o VaultObserver) Replayed(surface string) { o.s.replays.WithLabelValues(surface).Inc() }

func (o VaultObserver) AuditWriteFailed(string) { o.s.auditDropped.Inc() }

func (o VaultObserver) Verified(field, answer string) {
	o.s.verified.WithLabelValues(field, answer).Inc()
}
