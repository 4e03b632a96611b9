package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cardvault/cardvault/vault"
)

// Issue 30, item 11: the refusal family exists, at zero, before the first
// refusal, for every budget rule: a rate over a series that does not exist
// yet misses the first refusals.
func TestRefusalSeriesStartAtZero(t *testing.T) {
	s := New()
	s.Vault()
	want := 0
	for _, rules := range vault.BudgetRules {
		want += len(rules)
	}
	if n := testutil.CollectAndCount(s.refusals, "cardvault_refusals_total"); n != want || want == 0 {
		t.Fatalf("%d refusal series before any refusal, want %d", n, want)
	}
	if v := testutil.ToFloat64(s.refusals.WithLabelValues("card.secure_view", "Authorization")); v != 0 {
		t.Fatalf("a series starts at %v", v)
	}
}
