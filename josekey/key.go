// Package josekey owns tokenhandler's private signing keys for JOSE: loading one from PEM
// (EC P-256, Ed25519 or RSA), generating one, its public JWK and RFC 7638 thumbprint,
// and signing a compact JWS with it. The DPoP proofs (package dpop) and the
// private_key_jwt client assertions (package oauthagent) both sign through it, so key
// parsing lives in one place.
//
// It does not verify anything: verification belongs to go-oidc and the example API.
package josekey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Algorithms a Key signs with.
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
	PS256 = "PS256"
)

// Key is a private signing key with its algorithm. It is safe for concurrent use.
type Key struct {
	alg    string
	signer crypto.Signer
	pub    map[string]string // the public JWK's required members (RFC 7638)
	thumb  string
}

// Parse reads the first PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block of a PEM
// file. An EC P-256 key signs ES256, an Ed25519 key EdDSA, an RSA key (at least 2048
// bits) RS256 unless WithAlg changes it to PS256. Errors never repeat key material.
func Parse(data []byte) (*Key, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("josekey: no PRIVATE KEY block in the PEM data")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("josekey: %s block does not parse", b.Type)
		}
		return FromSigner(k)
	}
}

// Load reads and parses a PEM file.
func Load(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("josekey: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// Generate returns a fresh key for alg: ES256 (P-256), EdDSA (Ed25519), RS256 or PS256
// (RSA 2048).
func Generate(alg string) (*Key, error) {
	var k any
	var err error
	switch alg {
	case ES256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case RS256, PS256:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("josekey: cannot generate a key for %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("josekey: generate: %w", err)
	}
	key, err := FromSigner(k)
	if err != nil {
		return nil, err
	}
	return key.WithAlg(alg)
}

// FromSigner wraps a private key (*ecdsa.PrivateKey on P-256, ed25519.PrivateKey,
// *rsa.PrivateKey of at least 2048 bits).
func FromSigner(k any) (*Key, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("josekey: an EC key must be on P-256 (ES256)")
		}
		pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			return nil, fmt.Errorf("josekey: %w", err)
		}
		return newKey(ES256, k, map[string]string{"kty": "EC", "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])}), nil
	case ed25519.PrivateKey:
		return newKey(EdDSA, k, map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k.Public().(ed25519.PublicKey))}), nil
	case *ed25519.PrivateKey:
		return FromSigner(*k)
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("josekey: an RSA key must have at least 2048 bits, this one has %d", k.N.BitLen())
		}
		e := big2bytes(k.E)
		return newKey(RS256, k, map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(e)}), nil
	default:
		return nil, fmt.Errorf("josekey: unsupported key type %T (want EC P-256, Ed25519 or RSA)", k)
	}
}

func big2bytes(e int) []byte {
	var b []byte
	for ; e > 0; e >>= 8 {
		b = append([]byte{byte(e)}, b...)
	}
	return b
}

func newKey(alg string, s crypto.Signer, pub map[string]string) *Key {
	// RFC 7638: the required members in lexicographic order, no whitespace;
	// encoding/json sorts map keys, and none of the values needs escaping.
	canon, _ := json.Marshal(pub)
	sum := sha256.Sum256(canon)
	return &Key{alg: alg, signer: s, pub: pub, thumb: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// WithAlg returns the key set to sign with alg; only an RSA key has a choice (RS256 or
// PS256).
func (k *Key) WithAlg(alg string) (*Key, error) {
	if alg == k.alg {
		return k, nil
	}
	if k.pub["kty"] == "RSA" && (alg == RS256 || alg == PS256) {
		c := *k
		c.alg = alg
		return &c, nil
	}
	return nil, fmt.Errorf("josekey: a %s key cannot sign %s", k.pub["kty"], alg)
}

// Alg is the JWS algorithm the key signs with.
func (k *Key) Alg() string { return k.alg }

// Signer returns the private key, for signing with another JOSE implementation
// (package mint signs its JWTs with go-jose).
func (k *Key) Signer() crypto.Signer { return k.signer }

// Thumbprint is the RFC 7638 JWK SHA-256 thumbprint of the public key, base64url.
func (k *Key) Thumbprint() string { return k.thumb }

// PublicJWK returns the public key as a JWK object with only the required members, the
// form a DPoP proof's jwk header carries.
func (k *Key) PublicJWK() map[string]string {
	out := make(map[string]string, len(k.pub))
	for n, v := range k.pub {
		out[n] = v
	}
	return out
}

// PublicJWKJSON is the public key as JSON (required members only, sorted).
func (k *Key) PublicJWKJSON() []byte {
	b, _ := json.Marshal(k.pub)
	return b
}

// RegistrationJWK returns the public JWK to register at a provider: the required
// members plus kid (the thumbprint), use "sig" and alg, except for an RSA key, whose
// PEM file cannot say whether it signs RS256 or PS256.
func (k *Key) RegistrationJWK() []byte {
	m := k.PublicJWK()
	m["kid"], m["use"] = k.thumb, "sig"
	if k.pub["kty"] != "RSA" {
		m["alg"] = k.alg
	}
	b, _ := json.Marshal(m)
	return b
}

// PEM returns the private key as a PKCS #8 PEM block.
func (k *Key) PEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, fmt.Errorf("josekey: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Sign signs the JWS signing input ("<b64 header>.<b64 payload>") and returns the
// base64url signature.
func (k *Key) Sign(signingInput []byte) (string, error) {
	var sig []byte
	var err error
	switch k.alg {
	case EdDSA:
		sig = ed25519.Sign(k.signer.(ed25519.PrivateKey), signingInput)
	case ES256:
		h := sha256.Sum256(signingInput)
		var der []byte
		der, err = ecdsa.SignASN1(rand.Reader, k.signer.(*ecdsa.PrivateKey), h[:])
		if err == nil {
			sig, err = asn1ToRaw(der, 32)
		}
	case RS256:
		h := sha256.Sum256(signingInput)
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.signer.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case PS256:
		h := sha256.Sum256(signingInput)
		sig, err = rsa.SignPSS(rand.Reader, k.signer.(*rsa.PrivateKey), crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	}
	if err != nil {
		return "", fmt.Errorf("josekey: sign: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sig), nil
}

// JWT signs a compact JWS of header and claims (both JSON-encoded with encoding/json).
// The header's alg is set to the key's.
func (k *Key) JWT(header map[string]any, claims any) (string, error) {
	h := make(map[string]any, len(header)+1)
	for n, v := range header {
		h[n] = v
	}
	h["alg"] = k.alg
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("josekey: header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("josekey: claims: %w", err)
	}
	enc := base64.RawURLEncoding
	in := make([]byte, 0, enc.EncodedLen(len(hb))+1+enc.EncodedLen(len(cb))+90)
	in = enc.AppendEncode(in, hb)
	in = append(in, '.')
	in = enc.AppendEncode(in, cb)
	sig, err := k.Sign(in)
	if err != nil {
		return "", err
	}
	return string(in) + "." + sig, nil
}

// asn1ToRaw turns an ASN.1 ECDSA signature into the JWS form: r || s, each size bytes.
func asn1ToRaw(der []byte, size int) ([]byte, error) {
	// SEQUENCE { INTEGER r, INTEGER s }, short lengths only for P-256.
	if len(der) < 8 || der[0] != 0x30 || int(der[1]) != len(der)-2 {
		return nil, errors.New("malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	rest := der[2:]
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || int(rest[1]) > len(rest)-2 {
			return nil, errors.New("malformed ECDSA signature")
		}
		n := int(rest[1])
		v := rest[2 : 2+n]
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) > size {
			return nil, errors.New("malformed ECDSA signature")
		}
		copy(out[(i+1)*size-len(v):(i+1)*size], v)
		rest = rest[2+n:]
	}
	return out, nil
}
