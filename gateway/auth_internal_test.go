package gateway

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyToken: what checking one connection token costs the
// gateway, by algorithm (a connect storm of N clients costs N of these).
func BenchmarkVerifyToken(b *testing.B) {
	dir := b.TempDir()
	secret := []byte(strings.Repeat("k", 32))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	var files []string
	for name, pub := range map[string]any{"rsa": &rsaKey.PublicKey, "ec": &ecKey.PublicKey, "ed": edPub} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			b.Fatal(err)
		}
		f := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	v, err := newVerifier(&AuthConfig{HMACSecret: secret, PublicKeyFiles: files})
	if err != nil {
		b.Fatal(err)
	}
	claims := jwt.MapClaims{"sub": "user-42", "exp": time.Now().Add(time.Hour).Unix(), "groups": []string{"room-1"}}
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", jwt.SigningMethodHS256, secret},
		{"RS256", jwt.SigningMethodRS256, rsaKey},
		{"ES256", jwt.SigningMethodES256, ecKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edKey},
	} {
		tok, err := jwt.NewWithClaims(tc.method, claims).SignedString(tc.key)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
