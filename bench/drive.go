// Package bench drives a running cardvault over HTTP with concurrent
// clients for a bounded time, measures the same crypto work in-process as
// each operation's bound, and reports throughput, latency percentiles and
// the ratio of the two.
package bench

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// ErrExhausted is returned by a client's step when it has nothing left to
// send (its prepared requests ran out); the client stops, the others go on.
var ErrExhausted = errors.New("bench: prepared requests exhausted")

// Sample is what one timed phase measured.
type Sample struct {
	Ops       int64 // steps that succeeded
	Failures  int64 // steps that returned an error other than ErrExhausted
	Elapsed   time.Duration
	Latencies []time.Duration // of successful steps, sorted
	// FirstFailure is kept to say why a phase failed; it never holds card
	// data, since steps describe answers by status and field only.
	FirstFailure error
}

// Rate is successful steps per second.
func (s Sample) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Ops) / s.Elapsed.Seconds()
}

// Percentile is the nearest-rank q-quantile (0 < q <= 1) of the latencies.
func (s Sample) Percentile(q float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(q*float64(len(s.Latencies))+0.999999) - 1
	return s.Latencies[max(0, min(i, len(s.Latencies)-1))]
}

// Drive runs step from clients goroutines until d has passed or ctx ends,
// timing each call. step gets its client's number, so it can keep
// per-client state without locks.
func Drive(ctx context.Context, clients int, d time.Duration, step func(ctx context.Context, client int) error) Sample {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type tally struct {
		ops, failures int64
		lat           []time.Duration
		first         error
	}
	tallies := make([]tally, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[c]
			t.lat = make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				began := time.Now()
				err := step(ctx, c)
				switch {
				case errors.Is(err, ErrExhausted):
					return
				case err != nil && ctx.Err() != nil:
					return // cut off by the deadline: not the service's failure
				case err != nil:
					t.failures++
					if t.first == nil {
						t.first = err
					}
				default:
					t.ops++
					t.lat = append(t.lat, time.Since(began))
				}
			}
		}()
	}
	wg.Wait()
	s := Sample{Elapsed: time.Since(start)}
	for _, t := range tallies {
		s.Ops += t.ops
		s.Failures += t.failures
		s.Latencies = append(s.Latencies, t.lat...)
		if s.FirstFailure == nil {
			s.FirstFailure = t.first
		}
	}
	slices.Sort(s.Latencies)
	return s
}
