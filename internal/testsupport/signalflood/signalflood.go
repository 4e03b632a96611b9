//go:build linux

// Package signalflood is for tests that show a C call leaves no clear data
// in the Go heap by way of signal frames (see package cleancall): it runs
// calls on one thread under a stream of the Go runtime's own preemption
// signal, keeps the secrets outside the Go heap, and scans the Go heap
// for them afterwards.
package signalflood

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// OutsideGoHeap is anonymous memory the Go runtime does not manage: what a
// test keeps there enters the Go heap only by the path under test.
func OutsideGoHeap(t testing.TB, n int) []byte {
	t.Helper()
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clear(b); syscall.Munmap(b) })
	return b
}

// Last says where the last signal lands, the one whose frame stays on
// the signal stack: every signal's frame overwrites the one before.
type Last int

const (
	// AfterLastCall: registers the calls filled and nothing cleared are
	// saved by any later signal, not only by one that lands mid-call.
	AfterLastCall Last = iota
	// DuringLastCall: the signal lands while the last call runs, delay
	// after it starts, and none follows.
	DuringLastCall
)

// Run calls call(i) for i in [0, n) on one thread while sending that
// thread SIGURG every 50 µs, places the last signal as last says, and
// lets it be handled before the thread is released. It returns the
// number of signals sent.
func Run(t testing.TB, n int, last Last, delay time.Duration, call func(i int)) int {
	t.Helper()
	tid, lastCall, finished, release := make(chan int), make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- syscall.Gettid()
		for i := range n {
			if i == n-1 && last == DuringLastCall {
				close(lastCall)
			}
			call(i)
		}
		close(finished)
		<-release
	}()
	target, signals := <-tid, 0
	signal := func() {
		if err := syscall.Tgkill(os.Getpid(), target, syscall.SIGURG); err != nil {
			t.Fatal(err)
		}
		signals++
	}
	spin := func(d time.Duration) {
		for start := time.Now(); time.Since(start) < d; {
		}
	}
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-lastCall:
			spin(delay)
			signal()
			<-finished
			running = false
		default:
			signal()
			spin(50 * time.Microsecond)
		}
	}
	if last == AfterLastCall {
		signal()
	}
	time.Sleep(10 * time.Millisecond)
	close(release)
	return signals
}

// Found says which of the secrets, each k bytes of secrets, have 16
// aligned bytes somewhere in the Go heap. The heap is copied before the
// index of windows is built, which is itself Go heap.
func Found(t testing.TB, secrets []byte, k int) (found map[int]bool, scanned int) {
	t.Helper()
	heap := goHeapSnapshot(t)
	windows := map[[16]byte]int{}
	for i := 0; i < len(secrets)/k; i++ {
		for off := 0; off+16 <= k; off += 16 {
			windows[[16]byte(secrets[i*k+off:])] = i
		}
	}
	found = map[int]bool{}
	for off := 0; off+16 <= len(heap); off++ {
		if i, ok := windows[[16]byte(heap[off:])]; ok {
			found[i] = true
		}
	}
	return found, len(heap)
}

// goHeapSnapshot copies this process's Go heap (the anonymous mappings
// near a fresh heap object: Go 1.26 places its arenas at a random base)
// into memory outside it.
func goHeapSnapshot(t testing.TB) []byte {
	t.Helper()
	probe := new([4096]byte)
	at := uint64(uintptr(unsafe.Pointer(probe)))
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	type span struct{ lo, hi uint64 }
	var spans []span
	total := uint64(0)
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || !strings.HasPrefix(f[1], "rw") {
			continue // file-backed or named ([heap], [stack])
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		s, _ := strconv.ParseUint(lo, 16, 64)
		e, _ := strconv.ParseUint(hi, 16, 64)
		if s+1<<30 > at && s < at+1<<30 {
			spans = append(spans, span{s, e})
			total += e - s
		}
	}
	runtime.KeepAlive(probe)
	if len(spans) == 0 {
		t.Fatal("no anonymous mapping holds the Go heap")
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	out := OutsideGoHeap(t, int(total))
	n := 0
	for _, s := range spans {
		r, _ := mem.ReadAt(out[n:n+int(s.hi-s.lo)], int64(s.lo))
		n += r
	}
	return out[:n]
}
