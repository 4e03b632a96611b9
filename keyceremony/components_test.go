package keyceremony

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/hsm"
)

// legacyKCV is the fake admin port: the legacy AES-ECB KCV (the first
// three bytes of a zero block encrypted under the value), computed here
// instead of in a token. The real port is the token's (SoftHSM2 and NSS
// through the binary's tests).
type legacyKCV struct{ calls int }

func (k *legacyKCV) ValueKCV(_ context.Context, _ hsm.Kind, value []byte) (hsm.CheckValue, error) {
	k.calls++
	b, err := aes.NewCipher(value)
	if err != nil {
		return hsm.CheckValue{}, err
	}
	out := make([]byte, 16)
	b.Encrypt(out, make([]byte, 16))
	return hsm.CheckValue{Value: strings.ToUpper(hex.EncodeToString(out[:3])), Method: "AES-ECB"}, nil
}

func kcvOf(t *testing.T, v []byte) string {
	t.Helper()
	cv, err := (&legacyKCV{}).ValueKCV(context.Background(), hsm.KindAES, v)
	if err != nil {
		t.Fatal(err)
	}
	return cv.Value
}

// components is a Source over fixed components; confirm answers the
// prompt's confirmations.
type components struct {
	list      []Component
	confirm   func(kcv hsm.CheckValue) string
	confirmed int
}

func (c *components) Component(i int) (Component, error) { return c.list[i-1], nil }
func (c *components) Confirm(_ int, _ string, kcv hsm.CheckValue) (string, error) {
	c.confirmed++
	return c.confirm(kcv), nil
}

func random32(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCombineIsTheXOROfConfirmedComponents(t *testing.T) {
	a, b, c := random32(t), random32(t), random32(t)
	want := make([]byte, 32)
	for i := range want {
		want[i] = a[i] ^ b[i] ^ c[i]
	}
	kcvA, kcvB := kcvOf(t, a), kcvOf(t, b)
	src := &components{
		list: []Component{
			{Custodian: "alice", Value: bytes.Clone(a), Confirmed: strings.ToLower(kcvA)},
			{Custodian: "bob", Value: bytes.Clone(b), Confirmed: kcvB + " (AES-ECB)"},
			{Custodian: "carol", Value: bytes.Clone(c)}, // confirms at the prompt
		},
		confirm: func(kcv hsm.CheckValue) string { return kcv.Value },
	}
	var said bytes.Buffer
	key, custodians, err := Combine(context.Background(), &legacyKCV{}, hsm.KindAES, 3, src, &said)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, want) {
		t.Fatal("the key is not the XOR of the components")
	}
	if len(custodians) != 3 || custodians[0].Name != "alice" || custodians[1].KCV != kcvB+" (AES-ECB)" || custodians[2].Name != "carol" {
		t.Fatalf("custodian records %+v", custodians)
	}
	if src.confirmed != 1 {
		t.Fatalf("the prompt was asked %d times, want once (carol's form stated no KCV)", src.confirmed)
	}
	for i, comp := range src.list {
		if !bytes.Equal(comp.Value, make([]byte, 32)) {
			t.Errorf("component %d was not cleared", i+1)
		}
	}
	for _, v := range [][]byte{a, b, c} {
		if strings.Contains(said.String(), hex.EncodeToString(v)) || strings.Contains(strings.ToUpper(said.String()), strings.ToUpper(hex.EncodeToString(v))) {
			t.Fatal("a component value was printed")
		}
	}
}

func TestCombineRefuses(t *testing.T) {
	a, b := random32(t), random32(t)
	for _, tc := range []struct {
		name string
		list []Component
		want string
	}{
		{"a wrong KCV", []Component{{Custodian: "alice", Value: bytes.Clone(a), Confirmed: "000000"}, {Custodian: "bob", Value: bytes.Clone(b), Confirmed: kcvOf(t, b)}},
			"component 1 (custodian alice): its KCV is"},
		{"a KCV by another method", []Component{{Custodian: "alice", Value: bytes.Clone(a), Confirmed: kcvOf(t, a) + " (AES-CMAC)"}, {Custodian: "bob", Value: bytes.Clone(b), Confirmed: kcvOf(t, b)}},
			"made by AES-CMAC and this token checks by AES-ECB"},
		{"identical components", []Component{{Custodian: "alice", Value: bytes.Clone(a), Confirmed: kcvOf(t, a)}, {Custodian: "bob", Value: bytes.Clone(a), Confirmed: kcvOf(t, a)}},
			"has the same KCV as component 1: identical components cancel out"},
		{"a short component", []Component{{Custodian: "alice", Value: a[:16], Confirmed: "x"}, {}},
			"component 1: must be 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kcvs := &legacyKCV{}
			key, custodians, err := Combine(context.Background(), kcvs, hsm.KindAES, 2, &components{list: tc.list}, new(bytes.Buffer))
			if err == nil || key != nil || custodians != nil {
				t.Fatalf("combined: key %x, %v, %v", key, custodians, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "aborted, nothing written") {
				t.Fatalf("error %q, want it to say %q and that nothing was written", err, tc.want)
			}
			for i, c := range tc.list {
				if len(c.Value) == 32 && i < kcvs.calls && !bytes.Equal(c.Value, make([]byte, 32)) {
					t.Errorf("component %d, read before the refusal, was not cleared", i+1)
				}
			}
		})
	}
}

func TestParseComponent(t *testing.T) {
	v := random32(t)
	grouped := strings.ToUpper(hex.EncodeToString(v[:16])) + " " + hex.EncodeToString(v[16:]) + "\r\n"
	got, err := ParseComponent([]byte(grouped))
	if err != nil || !bytes.Equal(got, v) {
		t.Fatalf("grouped hex: %x, %v", got, err)
	}
	secret := hex.EncodeToString(v)
	for _, bad := range []string{secret[:63], secret + "0", secret[:62] + "zz", ""} {
		_, err := ParseComponent([]byte(bad))
		if err == nil {
			t.Fatalf("%d characters accepted", len(bad))
		}
		if len(bad) > 8 && strings.Contains(err.Error(), bad[:8]) {
			t.Fatalf("the error quotes the input: %v", err)
		}
	}
}

func TestReadComponentForm(t *testing.T) {
	dir := t.TempDir()
	v := random32(t)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "kcv: 1A2B3C\ncustodian: alice\ncomponent: "+hex.EncodeToString(v)+"\n")
	c, err := ReadComponentForm(good)
	if err != nil || c.Custodian != "alice" || c.Confirmed != "1A2B3C" || !bytes.Equal(c.Value, v) {
		t.Fatalf("form: %+v, %v", c, err)
	}
	for name, text := range map[string]string{
		"nokcv":       "custodian: alice\ncomponent: " + hex.EncodeToString(v) + "\n",
		"nocomponent": "custodian: alice\nkcv: 1A2B3C\n",
		"nocustodian": "kcv: 1A2B3C\ncomponent: " + hex.EncodeToString(v) + "\n",
	} {
		if _, err := ReadComponentForm(write(name, text)); err == nil {
			t.Errorf("form %s accepted", name)
		} else if strings.Contains(err.Error(), hex.EncodeToString(v)) {
			t.Errorf("form %s: the error quotes the component", name)
		}
	}
}
