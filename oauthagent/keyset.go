package oauthagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// jwksRefetchInterval is the least time between two fetches of the provider's key set.
const jwksRefetchInterval = 10 * time.Second

// keySet is the provider's JWKS for go-oidc's verifiers (ID tokens and back-channel
// logout tokens). It is fetched when first needed and again when a token fails to verify
// against it, at most once per interval: a forged token, with an unknown kid or a bad
// signature, costs at most one fetch per interval however many arrive (go-oidc's own
// RemoteKeySet fetches again on every such token). A key rotation at the provider is
// seen at the first token signed with the new key, at most one interval after the last
// fetch.
type keySet struct {
	uri      string
	client   *http.Client
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	keys    *oidc.StaticKeySet // nil until the first successful fetch
	fetched time.Time          // the last fetch attempt, successful or not
	flight  singleflight.Group
}

var _ oidc.KeySet = (*keySet)(nil)

func newKeySet(uri string, client *http.Client, now func() time.Time) *keySet {
	return &keySet{uri: uri, client: client, interval: jwksRefetchInterval, now: now}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	k.mu.Lock()
	keys, fetched := k.keys, k.fetched
	k.mu.Unlock()
	err := errors.New("no keys fetched yet")
	if keys != nil {
		var payload []byte
		if payload, err = keys.VerifySignature(ctx, jwt); err == nil {
			return payload, nil
		}
	}
	if !fetched.IsZero() && k.now().Sub(fetched) < k.interval {
		return nil, fmt.Errorf("oauthagent: jwks: %w (the key set was fetched %s ago; fetched again at most every %s)",
			err, k.now().Sub(fetched).Round(time.Millisecond), k.interval)
	}
	v, err, _ := k.flight.Do("fetch", func() (any, error) { return k.fetch(ctx, fetched) })
	if err != nil {
		return nil, err
	}
	return v.(*oidc.StaticKeySet).VerifySignature(ctx, jwt)
}

// fetch gets the key set, unless another caller did since seen. The time of a fetch is
// recorded when it ends (successful or not), so callers that come while it is in flight
// still see the previous time and join it (the single flight) instead of being turned
// away by the interval.
func (k *keySet) fetch(ctx context.Context, seen time.Time) (*oidc.StaticKeySet, error) {
	k.mu.Lock()
	if !k.fetched.Equal(seen) { // another caller's flight ended since this one looked
		keys := k.keys
		k.mu.Unlock()
		if keys == nil {
			return nil, errors.New("oauthagent: jwks: the key set could not be fetched")
		}
		return keys, nil
	}
	k.mu.Unlock()

	keys, err := k.download(ctx)
	k.mu.Lock()
	k.fetched = k.now()
	if err == nil {
		k.keys = keys
	}
	k.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("oauthagent: jwks: %w", err)
	}
	return keys, nil
}

func (k *keySet) download(ctx context.Context) (*oidc.StaticKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("provider answered %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	keys := &oidc.StaticKeySet{}
	for _, key := range set.Keys {
		if (key.Use == "" || key.Use == "sig") && key.Valid() && key.IsPublic() {
			keys.PublicKeys = append(keys.PublicKeys, key.Key)
		}
	}
	if len(keys.PublicKeys) == 0 {
		return nil, errors.New("no signing keys in the key set")
	}
	return keys, nil
}
