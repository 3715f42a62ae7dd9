package session

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// keySize is the length of both keys of a KeyPair: HMAC-SHA256 and AES-256.
const keySize = 32

// KeyPair is one entry of cookies.keys: a 32-byte HMAC key that authenticates a cookie and a
// 32-byte AES key that encrypts it. The first pair of a key ring seals, every pair opens.
type KeyPair struct{ Hash, Block []byte }

// GenerateKeyPair returns a fresh random key pair (what `tokenhandler keygen` prints).
func GenerateKeyPair() (KeyPair, error) {
	b := make([]byte, 2*keySize)
	if _, err := rand.Read(b); err != nil {
		return KeyPair{}, fmt.Errorf("session: generate key pair: %w", err)
	}
	return KeyPair{Hash: b[:keySize:keySize], Block: b[keySize:]}, nil
}

// ParseKeyPair parses one cookies.keys entry, "<hash key>:<block key>", each 32 bytes in
// standard or URL-safe base64, padded or not (the form `tokenhandler keygen` prints, see
// KeyPair.Reveal). The hash key authenticates (HMAC-SHA256), the block key encrypts
// (AES-256); the two must differ. It is the one parser of a key pair: config validation,
// keygen and start-up all use it. Errors never repeat the key material; they read as the
// rest of a sentence about the entry ("cookies.keys[0]: hash key: is 16 bytes, want 32").
func ParseKeyPair(s string) (KeyPair, error) {
	h, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return KeyPair{}, errors.New(`is not "<base64 hash key>:<base64 block key>" (no colon)`)
	}
	if strings.Contains(b, ":") {
		return KeyPair{}, errors.New(`is not "<base64 hash key>:<base64 block key>" (more than one colon)`)
	}
	hash, err := decodeKey(h)
	if err != nil {
		return KeyPair{}, fmt.Errorf("hash key: %w", err)
	}
	block, err := decodeKey(b)
	if err != nil {
		return KeyPair{}, fmt.Errorf("block key: %w", err)
	}
	if string(hash) == string(block) {
		return KeyPair{}, errors.New("hash key and block key must differ")
	}
	return KeyPair{Hash: hash, Block: block}, nil
}

// KeyLen is the length in bytes of each half of a key pair.
const KeyLen = keySize

func decodeKey(s string) ([]byte, error) {
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err = enc.Strict().DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("is not base64")
	}
	if len(b) != keySize {
		return nil, fmt.Errorf("is %d bytes, want %d", len(b), keySize)
	}
	return b, nil
}

// Reveal returns the pair in the form ParseKeyPair reads, standard base64 with padding. It
// is the secret itself: only keygen (and tests that configure a server) print it. Every
// other way of printing a KeyPair (String, GoString, any fmt verb, slog) gives
// "[redacted]".
func (k KeyPair) Reveal() string {
	return base64.StdEncoding.EncodeToString(k.Hash) + ":" + base64.StdEncoding.EncodeToString(k.Block)
}

const redacted = "[redacted]"

// String implements fmt.Stringer: "[redacted]".
func (k KeyPair) String() string { return redacted }

// GoString implements fmt.GoStringer: "[redacted]".
func (k KeyPair) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb (%v, %+v, %#v, %s, %x, %q, ...) prints
// "[redacted]", never the key bytes.
func (k KeyPair) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue implements slog.LogValuer so that a key pair never reaches a log.
func (k KeyPair) LogValue() slog.Value { return slog.StringValue(redacted) }

// validate checks the key lengths that securecookie needs: HMAC-SHA256 and AES-256.
func (k KeyPair) validate() error {
	if len(k.Hash) != keySize || len(k.Block) != keySize {
		return fmt.Errorf("key pair has %d+%d bytes, want %d+%d", len(k.Hash), len(k.Block), keySize, keySize)
	}
	return nil
}

// NewID returns a fresh random session id: 256 bits, base64url without padding.
func NewID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
