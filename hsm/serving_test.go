package hsm

import (
	"reflect"
	"slices"
	"testing"
)

// The request path's handle carries exactly the narrow paths' operations,
// the audit MACs and the read-only health of the token; every ceremony
// operation of *Module (generate, import, export, destroy, seal or
// decrypt under a named version, raw RSA) stays off it. A method added to
// Serving must be added here, on purpose.
func TestServingHasOnlyTheRequestPath(t *testing.T) {
	allowed := []string{
		// vault.Keys
		"Seal", "Open", "FingerprintPAN", "PANFingerprints", "RequestDigest",
		"SetPINPublicKey", "SetPINVersions", "SetPINDecryptPKCS1", "SetPINDecryptOAEP", "PEKEncryptBlock", "PINDigits", "ZonePINDigits",
		// the audit chains' checkpoints
		"AuditMAC", "AuditMACWithVersion",
		// readiness, logs and metrics
		"Probe", "SealRoundTrip", "RequireKeys", "KeyRefresh", "Rejections", "Limitations", "Label", "Token",
		"Reconnects", "SlotsInUse", "Slots", "SetObserver", "ActiveVersion", "Close",
	}
	typ := reflect.TypeOf(&Serving{})
	for i := range typ.NumMethod() {
		if name := typ.Method(i).Name; !slices.Contains(allowed, name) {
			t.Errorf("Serving has %s, which the request path does not need", name)
		}
	}
	for _, admin := range []string{"Generate", "ImportSecret", "DestroyVersion", "SealWithVersion", "PEKDecryptBlock", "ZonePINDecryptBlock", "KCV", "SetKeyBackup", "Export", "Import", "Keys", "RestartUnderneath"} {
		if _, ok := typ.MethodByName(admin); ok {
			t.Errorf("Serving carries the ceremony operation %s", admin)
		}
		if _, ok := reflect.TypeOf(&Module{}).MethodByName(admin); !ok && admin != "RestartUnderneath" {
			t.Errorf("*Module has no %s: the list of ceremony operations is stale", admin)
		}
	}
}
