package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/cardvault/cardvault/internal/testsupport/testenv"
)

// randomPAN is a Luhn-valid 16-digit PAN with 14 random digits, so that
// any ten consecutive digits of it are as good as unique in a dump.
func randomPAN(t *testing.T) string {
	t.Helper()
	digits := make([]byte, 15)
	digits[0] = '4'
	for i := 1; i < 15; i++ {
		n, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			t.Fatal(err)
		}
		digits[i] = byte('0' + n.Int64())
	}
	return luhnComplete(string(digits))
}

// TestLeakScan serves real traffic that carries known card data (imports,
// secure views, Jiko virtual cards created and read, a PIN set through the
// guide's openssl flow), then looks for it, in every form the vault's
// paths hold it, in the running server's memory (the Go heap and C memory
// through /proc/PID/mem, and a gcore dump), then in the logs and database
// files after it stops. Logs and database must hold nothing. In memory,
// the forms the vault's own code builds must be gone: the PKCS#1 blocks
// of a Jiko reveal, the opened record (C memory: the PKCS#11 output
// buffer), the padded PIN and the PIN field. What remains is logged as a
// table; README's "What stays in memory" says why.
func TestLeakScan(t *testing.T) {
	gcore := testenv.RequireCommand(t, "gcore")
	v := newVaultEnv(t)
	if out, err := v.run(t, "ceremony", "init"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	token := v.token(t, "platform", "cards:write", "cards:read", "cards:reveal", "pin:write", "devices:write", "sandbox")
	base, logs, cmd := startServerCmd(t, v)
	jv := &jikoVault{vaultEnv: v, base: base, token: token, logs: logs}

	var forms secretForms
	const person = "leak-person"
	cards := map[string]string{}
	for i := range 20 {
		pan, cvv := randomPAN(t), strconv.Itoa(400+i)
		r := jv.post(t, jv.base+"/v1/cards", map[string]any{"owner_id": person, "pan": pan, "cvv": cvv, "expiry_month": 12, "expiry_year": 2031, "name": "LEAK SCAN"}, nil)
		if r.status != 201 {
			t.Fatalf("import: %d %s", r.status, r.body)
		}
		cards[extractID(t, r.body)] = pan
		forms.cards = append(forms.cards, scanCard{pan: pan, cvv: cvv, expiry: "122031"})
	}
	viewer := newViewer(t, jv, person)
	viewer.prepare(t, 10)
	n := 0
	for id, pan := range cards {
		if n++; n > 10 {
			break
		}
		got, err := viewer.reveal(t, id)
		if err != nil || got != pan {
			t.Fatalf("secure view: %v", err)
		}
	}
	forms.cards = append(forms.cards, jikoCreateAndRead(t, jv, "leak-jiko", 3)...)
	_, card := orderPhysicalCard(t, jv, "leak-acct")
	forms.pin = "8294"
	if st, body := runPINFlow(t, jv, "leak-acct", card, forms.pin); st != "200" {
		t.Fatalf("set PIN: %s %s", st, body)
	}

	// Registers a token call filled are saved into the Go heap by the next
	// signal on its thread (package cleancall): give every thread one.
	signalEveryThread(t, cmd.Process.Pid, syscall.SIGURG)
	goHeap, cMemory, stacks, regions := processMemory(t, cmd.Process.Pid)
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", cmd.Process.Pid))
	for _, p := range [][]byte{[]byte("\x00" + forms.pin + "\n")} {
		t.Logf("padded PIN at %v", where(regions, p))
	}
	for _, c := range forms.cards {
		if at := where(regions, append(append([]byte{byte(len(c.cvv))}, c.cvv...), 6)); len(at) > 0 {
			t.Logf("record encoding of a card at %v", at)
		}
	}
	core := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", core, strconv.Itoa(cmd.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	dump, err := os.ReadFile(fmt.Sprintf("%s.%d", core, cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if at := coreMappings(t, fmt.Sprintf("%s.%d", core, cmd.Process.Pid), maps, []byte("\x00"+forms.pin+"\n")); len(at) > 0 {
		t.Logf("padded PIN in the core dump, in: %v", at)
	}
	// The scan must be able to find what is there: the cards' ids are in
	// the server's memory (its database pages, if nothing else).
	idHits := 0
	for id := range cards {
		if bytes.Contains(dump, []byte(id)) {
			idHits++
		}
	}
	if idHits == 0 {
		t.Fatal("no card id found in the core dump: the dump or the scan is broken")
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	var db []byte
	files, _ := filepath.Glob(filepath.Join(v.dir, "vault.db*"))
	for _, f := range files {
		db = append(db, []byte(mustRead(t, f))...)
	}
	counts := map[string]leakCount{
		"Go heap": forms.count(goHeap), "C memory": forms.count(cMemory), "C stacks": forms.count(stacks), "core dump": forms.count(dump),
		"logs": forms.count([]byte(logs.String())), "database": forms.count(db),
	}
	of := map[string]int{}
	for _, f := range leakForms[:2] {
		of[f] = len(forms.cards)
	}
	of[leakForms[2]], of[leakForms[3]] = len(forms.cards), len(forms.cards)
	places := []string{"Go heap", "C memory", "C stacks", "core dump", "logs", "database"}
	t.Logf("card data found (distinct cards; PIN forms: occurrences) after %d imports, 10 secure views, 3 Jiko creates and 3 reads, 1 PIN set:\n%s",
		20, leakTable(places, counts, of))

	for _, place := range []string{"logs", "database"} {
		for form, n := range counts[place] {
			if n > 0 {
				t.Errorf("%s holds %d of %s", place, n, form)
			}
		}
	}
	// The forms the vault's own code builds, in buffers it owns or
	// allocates for the PKCS#11 call, must be gone from the heaps. A
	// thread's system stack may keep the token library's own locals from
	// its last call, which no caller can reach; they are reported.
	for _, form := range []string{leakForms[1], leakForms[2], leakForms[4], leakForms[5]} {
		for _, place := range []string{"Go heap", "C memory"} {
			if n := counts[place][form]; n > 0 {
				t.Errorf("%s: %s found %d times", place, form, n)
			}
		}
	}
}

// jikoCreateAndRead creates n virtual cards for owner through Jiko's API
// and reads each once, each time with a fresh RSA-4096 key, and returns
// the cards' data as the test decrypted it.
func jikoCreateAndRead(t *testing.T, jv *jikoVault, owner string, n int) []scanCard {
	t.Helper()
	keys := make([]*rsa.PrivateKey, 2*n)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], _ = rsa.GenerateKey(rand.Reader, 4096)
		}()
	}
	wg.Wait()
	pemOf := func(k *rsa.PrivateKey) string {
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	decrypt := func(k *rsa.PrivateKey, body string) (string, scanCard) {
		var r struct {
			CardID string `json:"card_id"`
			PAN    []byte `json:"encrypted_pan"`
			CVV    []byte `json:"encrypted_cvv"`
			Expiry []byte `json:"encrypted_expiration"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		field := func(ct []byte) string {
			p, err := rsa.DecryptPKCS1v15(nil, k, ct)
			if err != nil {
				t.Fatal(err)
			}
			return string(p)
		}
		exp := field(r.Expiry) // MM/YY
		return r.CardID, scanCard{pan: field(r.PAN), cvv: field(r.CVV), expiry: exp[:2] + "20" + exp[3:]}
	}
	var out []scanCard
	for i := 0; i < n; i++ {
		created := jv.post(t, jv.base+"/api/v1/jiko-accounts/"+owner+"/virtual-cards", map[string]string{"public_key": pemOf(keys[2*i])}, nil)
		if created.status != 201 {
			t.Fatalf("create: %d %s", created.status, created.body)
		}
		id, card := decrypt(keys[2*i], created.body)
		read := jv.post(t, jv.base+"/api/v1/jiko-accounts/"+owner+"/virtual-cards/"+id, map[string]string{"public_key": pemOf(keys[2*i+1])}, nil)
		if read.status != 200 {
			t.Fatalf("read: %d %s", read.status, read.body)
		}
		if _, again := decrypt(keys[2*i+1], read.body); again != card {
			t.Fatalf("read %+v, created %+v", again, card)
		}
		out = append(out, card)
	}
	return out
}

func extractID(t *testing.T, body string) string {
	t.Helper()
	var c struct{ ID string }
	if err := json.Unmarshal([]byte(body), &c); err != nil || c.ID == "" {
		t.Fatalf("no id in %s", body)
	}
	return c.ID
}
