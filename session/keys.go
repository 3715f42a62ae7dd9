package session

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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

// ParseKeyPair parses "<base64 32-byte hash key>:<base64 32-byte block key>". Either key may
// be standard or URL-safe base64, padded or not. Errors never quote the key material.
func ParseKeyPair(s string) (KeyPair, error) {
	hashPart, blockPart, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return KeyPair{}, errors.New(`session: parse key pair: want "<base64 hash key>:<base64 block key>"`)
	}
	hash, err := decodeKey(hashPart)
	if err != nil {
		return KeyPair{}, fmt.Errorf("session: parse key pair: hash key: %w", err)
	}
	block, err := decodeKey(blockPart)
	if err != nil {
		return KeyPair{}, fmt.Errorf("session: parse key pair: block key: %w", err)
	}
	return KeyPair{Hash: hash, Block: block}, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(b) != keySize {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), keySize)
	}
	return b, nil
}

// String returns the pair in the format ParseKeyPair reads, standard base64 with padding.
// It is the secret itself: print it only where a key is meant to be shown (keygen).
func (k KeyPair) String() string {
	return base64.StdEncoding.EncodeToString(k.Hash) + ":" + base64.StdEncoding.EncodeToString(k.Block)
}

// LogValue implements slog.LogValuer so that a key pair never reaches a log.
func (k KeyPair) LogValue() slog.Value { return slog.StringValue("[redacted]") }

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
