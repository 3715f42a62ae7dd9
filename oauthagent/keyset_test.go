package oauthagent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// A flood of forged tokens (foreign key, garbage) costs at most one key-set fetch per
// interval; after the interval one more fetch is allowed, which also picks up a rotated
// key.
func TestKeySetRefetchIsRateLimited(t *testing.T) {
	var fetches atomic.Int64
	var mu sync.Mutex
	served := &testKey.PublicKey
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: served, Algorithm: "RS256", Use: "sig", KeyID: "k1"}}})
	}))
	t.Cleanup(srv.Close)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	ks := newKeySet(srv.URL, srv.Client(), clock)
	ctx := context.Background()

	good := signJSON(t, testKey, `{"sub":"a"}`)
	if _, err := ks.VerifySignature(ctx, good); err != nil {
		t.Fatalf("VerifySignature(good) = %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := signJSON(t, other, `{"sub":"a"}`)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ks.VerifySignature(ctx, forged); err == nil {
				t.Error("VerifySignature(forged) = nil error")
			}
			_, _ = ks.VerifySignature(ctx, "not.a.jwt")
		}()
	}
	wg.Wait()
	if got := fetches.Load(); got != 1 {
		t.Fatalf("key-set fetches after 400 forged tokens within the interval = %d, want 1 (the first use)", got)
	}

	// The provider rotates to the other key; past the interval one fetch finds it.
	mu.Lock()
	served = &other.PublicKey
	mu.Unlock()
	clockMu.Lock()
	now = now.Add(jwksRefetchInterval)
	clockMu.Unlock()
	if _, err := ks.VerifySignature(ctx, forged); err != nil {
		t.Fatalf("VerifySignature(token of the rotated key) after the interval = %v", err)
	}
	if _, err := ks.VerifySignature(ctx, good); err == nil {
		t.Fatal("VerifySignature(token of the retired key) = nil error")
	}
	if got := fetches.Load(); got != 2 {
		t.Fatalf("key-set fetches = %d, want 2", got)
	}
}

// The first tokens verified at once, before any key set was fetched, share one fetch and
// all verify: none is turned away by the refetch interval while that fetch is in flight.
func TestKeySetFirstUseConcurrent(t *testing.T) {
	var fetches atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release // hold the first fetch until every caller has started
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &testKey.PublicKey, Algorithm: "RS256", Use: "sig", KeyID: "k1"}}})
	}))
	t.Cleanup(srv.Close)
	ks := newKeySet(srv.URL, srv.Client(), time.Now)
	good := signJSON(t, testKey, `{"sub":"a"}`)
	const n = 20
	errs := make(chan error, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			started.Done()
			_, err := ks.VerifySignature(context.Background(), good)
			errs <- err
		}()
	}
	started.Wait()
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("VerifySignature during the first fetch = %v", err)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("key-set fetches for %d concurrent first verifications = %d, want 1", n, got)
	}
}
