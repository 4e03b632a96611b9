package ceremonyplan

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Namespace is the SSHSIG namespace of an approval: officers sign a plan
// with `ssh-keygen -Y sign -n cardvault-ceremony -f KEY PLAN`, and a
// signature made for anything else (git commits, files) is refused.
const Namespace = "cardvault-ceremony"

// MinQuorum is the fewest approvals any ceremony runs with: dual control.
const MinQuorum = 2

// keyTypes are the officer key types accepted: no DSA, no RSA below 3072
// bits, no SHA-1 signatures.
var keyTypes = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSA,
}

// signatureFormats are the signature algorithms accepted (RSA keys sign
// with SHA-2 only).
var signatureFormats = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512,
}

// Member is an officer on a roster, with the key parsed.
type Member struct {
	Name        string
	Key         ssh.PublicKey
	Fingerprint string // ssh-keygen's SHA256:… form
}

// Parse checks a roster: distinct names and keys of accepted types, and
// a quorum of at least MinQuorum that the officers can meet.
func (r *Roster) Parse() ([]Member, error) {
	var members []Member
	for i, o := range r.Officers {
		if strings.TrimSpace(o.Name) == "" {
			return nil, fmt.Errorf("officers[%d]: name required", i)
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.Key))
		if err != nil {
			return nil, fmt.Errorf("officers[%d] (%s): key: want an OpenSSH public key line: %v", i, o.Name, err)
		}
		if err := acceptableKey(key); err != nil {
			return nil, fmt.Errorf("officers[%d] (%s): %v", i, o.Name, err)
		}
		m := Member{Name: o.Name, Key: key, Fingerprint: ssh.FingerprintSHA256(key)}
		for _, other := range members {
			if other.Name == m.Name || other.Fingerprint == m.Fingerprint {
				return nil, fmt.Errorf("officers[%d] (%s): the same name or key as %s", i, o.Name, other.Name)
			}
		}
		members = append(members, m)
	}
	if r.Quorum < MinQuorum || r.Quorum > len(members) {
		return nil, fmt.Errorf("quorum: want %d to the %d officers listed, got %d", MinQuorum, len(members), r.Quorum)
	}
	return members, nil
}

func acceptableKey(key ssh.PublicKey) error {
	if !slices.Contains(keyTypes, key.Type()) {
		return fmt.Errorf("key type %s is not accepted (want ed25519, ECDSA or RSA of 3072 bits or more)", key.Type())
	}
	if ck, ok := key.(ssh.CryptoPublicKey); ok {
		if r, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && r.N.BitLen() < 3072 {
			return fmt.Errorf("RSA key of %d bits is too short (want 3072 or more)", r.N.BitLen())
		}
	}
	return nil
}

// Approval is one officer's verified signature over a plan.
type Approval struct {
	Officer     string
	Fingerprint string
	// Signature identifies the signature itself (SHA-256 of its wire
	// form), so that the vault can refuse it a second time.
	Signature string
}

// ErrApproval is wrapped by every refusal of the approvals.
var ErrApproval = errors.New("approvals refused")

// Verify checks armored SSHSIG signatures over raw (the plan's bytes)
// against the roster: each must verify, in the cardvault-ceremony
// namespace, by an officer on the roster, each officer once, and there
// must be at least quorum of them.
func Verify(raw []byte, signatures [][]byte, roster []Member, quorum int) ([]Approval, error) {
	var out []Approval
	for i, armored := range signatures {
		a, err := verifyOne(raw, armored, roster)
		if err != nil {
			return nil, fmt.Errorf("%w: approval %d: %v", ErrApproval, i+1, err)
		}
		if j := slices.IndexFunc(out, func(b Approval) bool { return b.Officer == a.Officer }); j >= 0 {
			return nil, fmt.Errorf("%w: approval %d: %s approved already (approval %d); each officer counts once", ErrApproval, i+1, a.Officer, j+1)
		}
		out = append(out, a)
	}
	if quorum < MinQuorum {
		quorum = MinQuorum
	}
	if len(out) < quorum {
		return nil, fmt.Errorf("%w: %d approval(s) from distinct officers; this ceremony needs %d", ErrApproval, len(out), quorum)
	}
	return out, nil
}

func verifyOne(raw, armored []byte, roster []Member) (Approval, error) {
	sig, err := sshsig.Unarmor(armored)
	if err != nil {
		return Approval{}, fmt.Errorf("not an SSH signature (make it with ssh-keygen -Y sign -n %s): %v", Namespace, err)
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	i := slices.IndexFunc(roster, func(m Member) bool { return m.Fingerprint == fp })
	if i < 0 {
		return Approval{}, fmt.Errorf("signed by %s, which is no officer on the roster", fp)
	}
	m := roster[i]
	switch {
	case sig.Namespace != Namespace:
		return Approval{}, fmt.Errorf("%s signed for namespace %q, not %q", m.Name, sig.Namespace, Namespace)
	case !slices.Contains(signatureFormats, sig.Signature.Format):
		return Approval{}, fmt.Errorf("%s signed with %s, which is not accepted", m.Name, sig.Signature.Format)
	}
	if err := sshsig.Verify(bytes.NewReader(raw), sig, m.Key, sig.HashAlgorithm, Namespace); err != nil {
		return Approval{}, fmt.Errorf("%s's signature does not verify over this plan: it was made over another plan, or the plan changed after it (%v)", m.Name, err)
	}
	wire := sha256.Sum256(sig.Marshal())
	return Approval{Officer: m.Name, Fingerprint: fp, Signature: hex.EncodeToString(wire[:])}, nil
}

// VerifyOffline checks signatures over raw against the keys they carry
// themselves: a replay has no roster, so it learns who signed (by key
// fingerprint) and compares that with what the transcript recorded. It
// asks no quorum: the transcript's approvers must each be among them.
func VerifyOffline(raw []byte, signatures [][]byte) ([]Approval, error) {
	var out []Approval
	for i, armored := range signatures {
		sig, err := sshsig.Unarmor(armored)
		if err != nil {
			return nil, fmt.Errorf("%w: approval %d: not an SSH signature: %v", ErrApproval, i+1, err)
		}
		fp := ssh.FingerprintSHA256(sig.PublicKey)
		a, err := verifyOne(raw, armored, []Member{{Name: fp, Key: sig.PublicKey, Fingerprint: fp}})
		if err != nil {
			return nil, fmt.Errorf("%w: approval %d: %v", ErrApproval, i+1, err)
		}
		out = append(out, a)
	}
	return out, nil
}
