package session

import (
	"context"
	"time"
)

// HKDF infos of the shared derived-token entries; the policy key is appended to each.
const (
	derivedLookupInfo = "tokenhandler derived-token lookup v1 "
	derivedSealInfo   = "tokenhandler derived-token seal v1 "
)

// derivedKeys are the Redis key and the sealing key of one (access token, policy): both
// derived (HKDF) from the session's access token, which only its holder has, so a Redis
// dump reveals no derived token.
func derivedKeys(accessToken, policy string) (entryKeys, error) {
	return deriveEntryKeys(accessToken, derivedLookupInfo+policy, derivedSealInfo+policy)
}

// derivedNames are the Redis keys of one shared derived token and of the lock of its
// derivation: one hash slot.
func (s *sharedRefresh) derivedNames(lookup string) (entry, lock string) {
	entry = s.r.prefix + "derived:{" + lookup + "}"
	return entry, entry + ":lock"
}

// deriveShared runs build at most once at a time across the replicas for (accessToken,
// policy), through the lock of sharedRefresh.once, and shares its entry sealed until the
// entry's own end: a replica that finds the entry, or waits for the one deriving it,
// makes no provider call. errSharedUnavailable means Redis could not be asked (build did
// not run).
func (c *Coordinator) deriveShared(ctx context.Context, accessToken, policy string, build func(context.Context) (*derivedEntry, error)) (*derivedEntry, error) {
	keys, err := derivedKeys(accessToken, policy)
	if err != nil {
		return nil, err
	}
	entry, lock := c.shared.derivedNames(keys.lookup)
	var mine *derivedEntry
	sealed, _, err := c.shared.once(ctx, "derived:"+keys.lookup, lock, entry, func(ctx context.Context) ([]byte, time.Duration, error) {
		e, err := build(ctx)
		if err != nil {
			return nil, 0, err
		}
		mine = e
		return sealDerived(keys, e), e.until.Sub(c.now()), nil
	})
	switch {
	case err != nil:
		return nil, err
	case mine != nil:
		return mine, nil
	}
	if e := openDerived(keys, sealed, c.now()); e != nil {
		return e, nil
	}
	// An entry that does not open (another key version) or has just lapsed.
	return build(ctx)
}

// sealDerived seals e's token, end and type under k.
func sealDerived(k entryKeys, e *derivedEntry) []byte {
	return k.sealBytes(appendOptional(appendTime(appendString([]byte{formatV1, kindDerived}, e.tok.Token), e.until), e.tok.Type))
}

// openDerived opens an entry sealed by sealDerived; nil when it does not open or its end
// has passed.
func openDerived(k entryKeys, sealed []byte, now time.Time) *derivedEntry {
	plain, err := k.openBytes(sealed)
	if err != nil {
		return nil
	}
	d := newStringDecoder(string(plain), kindDerived)
	t := DerivedToken{Token: d.string()}
	until := d.time()
	t.Type = d.optional()
	if d.finish() != nil || t.Token == "" || !now.Before(until) {
		return nil
	}
	return &derivedEntry{tok: t, header: t.header(), until: until}
}

// unshareDerived deletes the shared entry of (accessToken, policy).
func (c *Coordinator) unshareDerived(ctx context.Context, accessToken, policy string) {
	if c.shared == nil {
		return
	}
	keys, err := derivedKeys(accessToken, policy)
	if err != nil {
		return
	}
	entry, _ := c.shared.derivedNames(keys.lookup)
	r := c.shared.r
	rctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.client.Del(rctx, entry).Err(); err != nil {
		r.failed("derived_del")
		c.log.WarnContext(ctx, "session: cannot delete a shared derived token", "err", err)
	}
}
