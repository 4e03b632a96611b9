package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"text/tabwriter"
	"time"
)

// Result is one operation's figures. Rates are per second, latencies in
// milliseconds.
type Result struct {
	Op         string  `json:"op"`
	Clients    int     `json:"clients"`
	Requests   int64   `json:"requests"`
	Failures   int64   `json:"failures"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Bound      float64 `json:"bound"`
	// Ratio is throughput over the crypto bound.
	Ratio float64 `json:"ratio"`
	// Limit is the rate the same crypto work reaches with the fastest
	// primitives on the machine (limit.go); RatioLimit is throughput over
	// it.
	Limit      float64 `json:"limit"`
	RatioLimit float64 `json:"ratio_limit"`
	// PeakRSSMiB is the bench process's peak resident memory during the
	// service phase: the server and its clients, which share the process.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// Reference and ReferenceRatio are set when the target is against
	// another rate than the bound (PIN set: the raw RSA-4096 decrypt).
	Reference      string  `json:"reference,omitempty"`
	ReferenceRate  float64 `json:"reference_rate,omitempty"`
	ReferenceRatio float64 `json:"reference_ratio,omitempty"`
	Target         float64 `json:"target"`
	// TailRatio is p99 over p50; the target is at most MaxTailRatio.
	TailRatio float64 `json:"tail_ratio"`
	Met       bool    `json:"met"`
	// FirstFailure says why a request failed, by status only.
	FirstFailure string `json:"first_failure,omitempty"`
	// Seeding, with --cards, is how the vault was filled before the run.
	*Seeding `json:",omitempty"`
}

// MaxTailRatio is the most p99 may be of p50.
const MaxTailRatio = 3.0

// maxPrepared caps the requests an operation prepares.
const maxPrepared = 200_000

// Profiler starts a profile of one operation's service phase and returns
// the function that stops it.
type Profiler func(op string) (stop func(), err error)

// Run measures each operation in turn: its crypto bound (and reference,
// if it has one) with clients goroutines for d, then the service with
// clients HTTP clients for d. progress, if not nil, gets a line per phase;
// profile, if not nil, profiles each service phase alone, so that a
// profile shows where the service's CPU went and not the preparation's.
func Run(ctx context.Context, ops []Op, limits Limits, clients int, d time.Duration, progress io.Writer, profile Profiler) ([]Result, error) {
	var results []Result
	for _, op := range ops {
		say(progress, "%s: setting up %d clients", op.Name(), clients)
		if err := op.Setup(ctx, clients); err != nil {
			return results, fmt.Errorf("%s: setup: %w", op.Name(), err)
		}
		say(progress, "%s: crypto bound for %s", op.Name(), d)
		bound := Drive(ctx, clients, d, func(ctx context.Context, _ int) error { return op.Bound(ctx) })
		if bound.Failures > 0 {
			return results, fmt.Errorf("%s: bound: %w", op.Name(), bound.FirstFailure)
		}
		r := Result{Op: op.Name(), Clients: clients, Bound: bound.Rate(), Target: op.Target()}
		if l, ok := op.(Limited); ok {
			r.Limit = limits.Of(l.Costs())
		}
		if ref, ok := op.(Referenced); ok {
			name, step := ref.Reference()
			say(progress, "%s: %s for %s", op.Name(), name, d)
			s := Drive(ctx, clients, d, func(ctx context.Context, _ int) error { return step(ctx) })
			if s.Failures > 0 {
				return results, fmt.Errorf("%s: %s: %w", op.Name(), name, s.FirstFailure)
			}
			r.Reference, r.ReferenceRate = name, s.Rate()
		}
		// The service cannot beat its bound, so a quarter more than the
		// bound's count is enough.
		n := min(maxPrepared, int(bound.Rate()*d.Seconds()*1.25)+4*clients)
		say(progress, "%s: preparing up to %d requests", op.Name(), n)
		if err := op.Prepare(ctx, n); err != nil {
			return results, fmt.Errorf("%s: prepare: %w", op.Name(), err)
		}
		runtime.GC()
		resetPeakRSS()
		say(progress, "%s: service for %s", op.Name(), d)
		stop := func() {}
		if profile != nil {
			var err error
			if stop, err = profile(op.Name()); err != nil {
				return results, fmt.Errorf("%s: profile: %w", op.Name(), err)
			}
		}
		s := Drive(ctx, clients, d, op.Step)
		stop()
		r.PeakRSSMiB = peakRSSMiB()
		r.fill(s)
		results = append(results, r)
		if err := ctx.Err(); err != nil {
			return results, err
		}
	}
	return results, nil
}

func (r *Result) fill(s Sample) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r.Requests, r.Failures, r.Seconds = s.Ops+s.Failures, s.Failures, s.Elapsed.Seconds()
	r.Throughput = s.Rate()
	r.P50, r.P99, r.P999 = ms(s.Percentile(0.50)), ms(s.Percentile(0.99)), ms(s.Percentile(0.999))
	if r.Bound > 0 {
		r.Ratio = r.Throughput / r.Bound
	}
	if r.Limit > 0 {
		r.RatioLimit = r.Throughput / r.Limit
	}
	if r.P50 > 0 {
		r.TailRatio = r.P99 / r.P50
	}
	versus := r.RatioLimit
	if r.ReferenceRate > 0 {
		r.ReferenceRatio = r.Throughput / r.ReferenceRate
		versus = r.ReferenceRatio
	}
	if s.FirstFailure != nil {
		r.FirstFailure = s.FirstFailure.Error()
	}
	r.Met = s.Failures == 0 && s.Ops > 0 && versus >= r.Target && r.TailRatio <= MaxTailRatio
}

func say(w io.Writer, format string, a ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", a...)
	}
}

// WriteTable prints the results as a table a person reads.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tclients\trequests\tfailed\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tbound/s\tratio\tlimit/s\tratio_limit\tpeak MiB\ttarget\tp99/p50\tmet\t")
	for _, r := range results {
		ratio := fmt.Sprintf("%.2f", r.Ratio)
		if r.Reference != "" {
			ratio = fmt.Sprintf("%.2f (%.2f of %s %.0f/s)", r.Ratio, r.ReferenceRatio, r.Reference, r.ReferenceRate)
		}
		met := "yes"
		if !r.Met {
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%.0f\t%.2f\t%.0f\t%.2f\t%.1f\t%s\t\n",
			r.Op, r.Clients, r.Requests, r.Failures, r.Throughput, r.P50, r.P99, r.P999, r.Bound, ratio, r.Limit, r.RatioLimit, r.PeakRSSMiB, r.Target, r.TailRatio, met)
	}
	return tw.Flush()
}

// WriteJSON prints one JSON object per operation, one per line.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// WriteLimits prints the primitive rates the limits were made of.
func WriteLimits(w io.Writer, limits Limits) error {
	names := make([]string, 0, len(limits))
	for name := range limits {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "\nlimits, measured in this run (per second, every client or CPU busy):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, name := range names {
		fmt.Fprintf(tw, "  %s\t%.0f\t\n", name, limits[name])
	}
	return tw.Flush()
}
