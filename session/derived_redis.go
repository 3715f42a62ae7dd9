package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// HKDF infos of the shared derived-token entries; the policy key is appended to each.
const (
	derivedLookupInfo = "tokenhandler derived-token lookup v1 "
	derivedSealInfo   = "tokenhandler derived-token seal v1 "
)

// derivedKeys are the Redis key and the sealing key of one (access token, policy): both
// derived (HKDF) from the session's access token, which only its holder has, so a Redis
// dump reveals no derived token.
func derivedKeys(accessToken, policy string) (lookup string, seal []byte, err error) {
	l, err := hkdf.Key(sha256.New, []byte(accessToken), nil, derivedLookupInfo+policy, 32)
	if err != nil {
		return "", nil, fmt.Errorf("session: derived key: %w", err)
	}
	seal, err = hkdf.Key(sha256.New, []byte(accessToken), nil, derivedSealInfo+policy, 32)
	if err != nil {
		return "", nil, fmt.Errorf("session: derived key: %w", err)
	}
	return hex.EncodeToString(l), seal, nil
}

func derivedAEAD(seal []byte) cipher.AEAD {
	block, _ := aes.NewCipher(seal) // 32 bytes: cannot fail
	aead, _ := cipher.NewGCM(block)
	return aead
}

// sharedDerived reads the derived token another replica stored for (accessToken,
// policy); nil when there is none or Redis cannot be read (then this replica derives).
func (c *Coordinator) sharedDerived(ctx context.Context, accessToken, policy string) *derivedEntry {
	if c.shared == nil {
		return nil
	}
	lookup, seal, err := derivedKeys(accessToken, policy)
	if err != nil {
		return nil
	}
	r := c.shared.r
	rctx, cancel := r.opContext(ctx)
	defer cancel()
	sealed, err := r.client.Get(rctx, r.prefix+"derived:"+lookup).Bytes()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			r.failed("derived_get")
			c.log.WarnContext(ctx, "session: cannot read a shared derived token", "err", err)
		}
		return nil
	}
	aead := derivedAEAD(seal)
	if len(sealed) < aead.NonceSize() {
		return nil
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(lookup))
	if err != nil {
		return nil
	}
	d := newStringDecoder(string(plain), kindDerived)
	tok, until := d.string(), d.time()
	if d.finish() != nil || tok == "" || !c.now().Before(until) {
		return nil
	}
	return &derivedEntry{tok: DerivedToken{Token: tok}, header: "Bearer " + tok, until: until}
}

// shareDerived stores e for the other replicas until e.until; a failure is logged (the
// others then derive their own).
func (c *Coordinator) shareDerived(ctx context.Context, accessToken, policy string, e *derivedEntry) {
	if c.shared == nil {
		return
	}
	ttl := e.until.Sub(c.now())
	if ttl <= 0 {
		return
	}
	lookup, seal, err := derivedKeys(accessToken, policy)
	if err != nil {
		return
	}
	plain := appendTime(appendString([]byte{formatV1, kindDerived}, e.tok.Token), e.until)
	aead := derivedAEAD(seal)
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(out)
	sealed := aead.Seal(out, out, plain, []byte(lookup))
	r := c.shared.r
	rctx, cancel := r.opContext(context.WithoutCancel(ctx))
	defer cancel()
	if err := r.client.Set(rctx, r.prefix+"derived:"+lookup, sealed, ttl).Err(); err != nil {
		r.failed("derived_set")
		c.log.WarnContext(ctx, "session: cannot share a derived token", "err", err)
	}
}

// unshareDerived deletes the shared entry of (accessToken, policy).
func (c *Coordinator) unshareDerived(ctx context.Context, accessToken, policy string) {
	if c.shared == nil {
		return
	}
	lookup, _, err := derivedKeys(accessToken, policy)
	if err != nil {
		return
	}
	r := c.shared.r
	rctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.client.Del(rctx, r.prefix+"derived:"+lookup).Err(); err != nil {
		r.failed("derived_del")
		c.log.WarnContext(ctx, "session: cannot delete a shared derived token", "err", err)
	}
}
