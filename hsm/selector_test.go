package hsm

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cardvault/cardvault/softhsm"
	"github.com/miekg/pkcs11"
)

// Two tokens with one label, as vendors' modules allow: the label alone is
// refused as ambiguous; the serial or the slot picks one, and every
// selector given must match it.
func TestTokenSelection(t *testing.T) {
	first := softhsm.TestToken(t)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", first.Label, "--so-pin", first.SOPIN, "--pin", first.PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+first.Conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second token: %v %s", err, out)
	}
	serials := map[uint]string{} // slot → serial
	p := pkcs11.New(first.Module)
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	slots, _ := p.GetSlotList(true)
	for _, s := range slots {
		info, _ := p.GetTokenInfo(s)
		if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 { // SoftHSM2 keeps a free slot too
			serials[s] = strings.TrimSpace(info.SerialNumber)
		}
	}
	p.Finalize()
	p.Destroy()
	if len(serials) != 2 {
		t.Fatalf("tokens %v, want 2", serials)
	}

	open := func(label, serial string, slot *uint) (TokenInfo, error) {
		m, err := Open(Config{Module: first.Module, PIN: first.PIN, TokenLabel: label, TokenSerial: serial, Slot: slot})
		if err != nil {
			return TokenInfo{}, err
		}
		defer m.Close()
		return m.Token(context.Background())
	}
	if _, err := open(first.Label, "", nil); err == nil || !strings.Contains(err.Error(), "2 tokens match the token with label") {
		t.Fatalf("an ambiguous label: %v", err)
	}
	for slot, serial := range serials {
		if info, err := open(first.Label, serial, nil); err != nil || info.Serial != serial {
			t.Errorf("label and serial %s: %v, %v", serial, info, err)
		}
		if info, err := open("", "", &slot); err != nil || info.Serial != serial {
			t.Errorf("slot %d: %v, %v", slot, info, err)
		}
		if _, err := open("another", serial, nil); err == nil || !strings.Contains(err.Error(), `no token with label "another"`) {
			t.Errorf("a serial with the wrong label: %v", err)
		}
	}
}

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pkcs11:token=card%20vault;serial=1a2b;slot-id=7?module-path=/usr/lib/vendor/libpkcs11.so&pin-source=file:/run/secrets/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.TokenLabel != "card vault" || u.TokenSerial != "1a2b" || u.Slot == nil || *u.Slot != 7 || u.Module != "/usr/lib/vendor/libpkcs11.so" || u.PINFile != "/run/secrets/pin" {
		t.Fatalf("parsed %+v", u)
	}
	// RFC 8089's forms of one local file.
	for _, pin := range []string{"file:/run/secrets/pin", "file:///run/secrets/pin", "file://localhost/run/secrets/pin"} {
		u, err := ParseURI("pkcs11:token=x?pin-source=" + pin)
		if err != nil || u.PINFile != "/run/secrets/pin" {
			t.Errorf("pin-source=%s: %q, %v; want /run/secrets/pin", pin, u.PINFile, err)
		}
	}
	for uri, want := range map[string]string{
		"token=x":                         "want pkcs11:",
		"pkcs11:object=card-kek":          `path attribute "object"`,
		"pkcs11:token=x?pin-value=123456": "use pin-source=file:PATH",
		"pkcs11:token=x?pin-source=env:P": "want file:PATH",
		"pkcs11:slot-id=one":              "not a number",
		"pkcs11:?module-path=/lib/x.so":   "no token, serial or slot-id",
		"pkcs11:token=x?max-sessions=4":   `query attribute "max-sessions"`,
		"pkcs11:token":                    "has no value",
		// Issue 27, finding 10: repeats and empty values are refused by
		// name, and file: URIs are read as RFC 8089 reads them.
		"pkcs11:token=nonexistent;token=cardvault":             `attribute "token" is given twice`,
		"pkcs11:token=x?pin-source=file:/a&pin-source=file:/b": `attribute "pin-source" is given twice`,
		"pkcs11:token=x?module-path=/a.so&module-path=/b.so":   `attribute "module-path" is given twice`,
		"pkcs11:token=":                                      `attribute "token" is empty`,
		"pkcs11:token=x?pin-source=file:":                    `pin-source names no file`,
		"pkcs11:token=x?module-path=":                        `attribute "module-path" is empty`,
		"pkcs11:token=x?pin-source=file://otherhost/run/pin": `names host "otherhost"`,
		"pkcs11:token=x?pin-source=file:run/pin":             `must be an absolute path`,
	} {
		if _, err := ParseURI(uri); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", uri, err, want)
		} else if strings.Contains(err.Error(), "123456") {
			t.Errorf("%s: the error shows the PIN: %v", uri, err)
		}
	}
}
