package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
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
// process through /proc/PID/mem, split into the Go heap (the runtime's
// arenas at 0xc000000000) and the rest (glibc's heap and arenas, where C
// code such as the PKCS#11 library and cgo allocate).
func processMemory(t *testing.T, pid int) (goHeap, cMemory []byte) {
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
	for sc.Scan() {
		f := strings.Fields(sc.Text())
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
		if start >= 0xc000000000 && start < 0xc100000000 {
			goHeap = append(goHeap, buf[:n]...)
		} else {
			cMemory = append(cMemory, buf[:n]...)
		}
	}
	return goHeap, cMemory
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
