package hsm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// The raw HSM bounds later work is measured against. Run with
// go test -bench . -run '^$' ./hsm

func BenchmarkSeal(b *testing.B) {
	m := openKeyedModule(b, CardKEK)
	ctx := context.Background()
	record := make([]byte, 52)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := m.Seal(ctx, []byte("card"), record); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	m := openKeyedModule(b, CardKEK)
	ctx := context.Background()
	sealed, _, err := m.Seal(ctx, []byte("card"), make([]byte, 52))
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Open(ctx, []byte("card"), sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkHMAC(b *testing.B) {
	m := openKeyedModule(b, PANHMAC)
	ctx := context.Background()
	pan := []byte("4000056655665556")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := m.MAC(ctx, PANHMAC, pan); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRSA4096Decrypt(b *testing.B) {
	m := openKeyedModule(b, SetPIN)
	ctx := context.Background()
	pub, err := m.PublicKey(ctx, 1)
	if err != nil {
		b.Fatal(err)
	}
	pkcs1, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte("1234\n"))
	oaep, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte("1234"), nil)
	for _, bc := range []struct {
		name string
		pad  RSAPadding
		ct   []byte
	}{{"PKCS1v15", PKCS1v15, pkcs1}, {"OAEP-SHA256", OAEPSHA256, oaep}} {
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := m.DecryptRSA(ctx, 1, bc.pad, bc.ct); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
