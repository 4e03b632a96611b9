package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	bin "encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// secretForms is what a leak scan looks for: each card's PAN by any ten
// consecutive digits, its CVV in the record's encoding and as a JSON
// value, the PAN right after a zero byte (the end of a PKCS#1 v1.5 block),
// and the PIN as the padded plaintext of the RSA step and as the format 4
// PIN field.
type secretForms struct {
	cards []scanCard
	pin   string
}

type scanCard struct {
	pan, cvv, expiry string // expiry as the record holds it: MMYYYY
}

// leakCount is how many distinct secrets of each form one body of bytes
// holds.
type leakCount map[string]int

// leakForms are the rows of the leak table, in order.
var leakForms = []string{"PAN (any 10 digits)", "PAN after 0x00 (PKCS#1 block)", "CVV in record encoding", "CVV as JSON value", "PIN padded (0x00 PIN \\n)", "PIN format 4 field"}

func (s secretForms) count(b []byte) leakCount {
	c := leakCount{}
	for _, card := range s.cards {
		for i := 0; i+10 <= len(card.pan); i++ {
			if bytes.Contains(b, []byte(card.pan[i:i+10])) {
				c[leakForms[0]]++
				break
			}
		}
		if bytes.Contains(b, append([]byte{0}, card.pan...)) {
			c[leakForms[1]]++
		}
		if card.cvv != "" {
			rec := append(append([]byte{byte(len(card.cvv))}, card.cvv...), 6)
			if bytes.Contains(b, append(rec, card.expiry...)) {
				c[leakForms[2]]++
			}
			if bytes.Contains(b, []byte(`"cvv":"`+card.cvv+`"`)) || bytes.Contains(b, []byte(`"cvc":"`+card.cvv+`"`)) {
				c[leakForms[3]]++
			}
		}
	}
	if s.pin != "" {
		c[leakForms[4]] = bytes.Count(b, []byte("\x00"+s.pin+"\n"))
		d := s.pin
		field := []byte{0x44, (d[0]-'0')<<4 | (d[1] - '0'), (d[2]-'0')<<4 | (d[3] - '0'), 0xAA, 0xAA, 0xAA, 0xAA, 0xAA}
		c[leakForms[5]] = bytes.Count(b, field)
	}
	return c
}

func (c leakCount) add(o leakCount) {
	for k, v := range o {
		c[k] += v
	}
}

// processMemory reads every anonymous, readable mapping of a running
// process through /proc/PID/mem, split into C memory (glibc's heap and
// arenas, where the PKCS#11 library and cgo allocate), thread stacks, and
// the rest (the Go heap, whose base Go 1.26 randomises, and the runtime's
// own mappings).
// A glibc arena is recognised by its first word, the heap_info's pointer
// to the malloc_state that follows it; a thread stack by the one-page
// guard glibc maps right below it (the Go heap's arenas are reserved in
// 64 MiB, so its mappings can be 8 MiB too, and are).
func processMemory(t *testing.T, pid int) (goHeap, cMemory, stacks []byte, regions []memRegion) {
	t.Helper()
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	sc := bufio.NewScanner(maps)
	var guardEnd uint64 // the end of the last one-page PROT_NONE mapping
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && f[1][0] == '-' {
			lo, hi, _ := strings.Cut(f[0], "-")
			start, _ := strconv.ParseUint(lo, 16, 64)
			end, _ := strconv.ParseUint(hi, 16, 64)
			if end-start == pageSize {
				guardEnd = end
			}
			continue
		}
		if len(f) < 5 || f[1][0] != 'r' {
			continue
		}
		if len(f) >= 6 && f[5] != "[heap]" {
			continue // file-backed, the stack, vdso: no heap data
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		buf = buf[:n]
		arena := false
		if n >= 8 {
			first := bin.LittleEndian.Uint64(buf)
			arena = first > start && first <= start+64
		}
		r := memRegion{start: start, data: buf, c: (len(f) >= 6 && f[5] == "[heap]") || arena}
		regions = append(regions, r)
		switch {
		case r.c:
			cMemory = append(cMemory, buf...)
		case start == guardEnd:
			// A thread's system stack, where C code (the token's
			// library) keeps its locals: cgo runs it on the stack
			// pthread_create gave the thread.
			stacks = append(stacks, buf...)
		default:
			goHeap = append(goHeap, buf...)
		}
	}
	return goHeap, cMemory, stacks, regions
}

// pageSize is the size of glibc's guard page below a thread stack.
const pageSize = 4096

// memRegion is one mapping read from /proc/PID/mem.
type memRegion struct {
	start uint64
	data  []byte
	c     bool // glibc's
}

// where says in which regions, and at which addresses, a pattern lies.
func where(regions []memRegion, pattern []byte) []string {
	var out []string
	for _, r := range regions {
		for off := 0; ; {
			i := bytes.Index(r.data[off:], pattern)
			if i < 0 {
				break
			}
			from := max(0, off+i-24)
			out = append(out, fmt.Sprintf("0x%x in %d KiB region at 0x%x (glibc %v), after %x", r.start+uint64(off+i), len(r.data)>>10, r.start, r.c, r.data[from:off+i]))
			off += i + len(pattern)
		}
	}
	return out
}

// leakTable formats counts per place as the table the issue asks for.
func leakTable(places []string, counts map[string]leakCount, of map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s", "form")
	for _, p := range places {
		fmt.Fprintf(&b, " %12s", p)
	}
	b.WriteString("\n")
	for _, f := range leakForms {
		fmt.Fprintf(&b, "%-32s", fmt.Sprintf("%s /%d", f, of[f]))
		for _, p := range places {
			fmt.Fprintf(&b, " %12d", counts[p][f])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// coreMappings names, for each place a pattern lies in a core dump, the
// process mapping (a line of /proc/PID/maps) it came from.
func coreMappings(t *testing.T, core string, maps []byte, pattern []byte) []string {
	t.Helper()
	f, err := elf.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		for off := 0; ; {
			i := bytes.Index(data[off:], pattern)
			if i < 0 {
				break
			}
			addr := p.Vaddr + uint64(off+i)
			line := fmt.Sprintf("0x%x (no mapping)", addr)
			for _, l := range strings.Split(string(maps), "\n") {
				lo, hi, _ := strings.Cut(strings.Fields(l + " x")[0], "-")
				a, _ := strconv.ParseUint(lo, 16, 64)
				b, _ := strconv.ParseUint(hi, 16, 64)
				if addr >= a && addr < b {
					line = fmt.Sprintf("0x%x in %s", addr, l)
				}
			}
			out = append(out, line)
			off += i + len(pattern)
		}
	}
	return out
}

// signalEveryThread sends sig to each thread of process pid, then gives
// the handlers a moment to run.
func signalEveryThread(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := syscall.Tgkill(pid, tid, sig); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
}
