package session

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user and system) the test process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func testCodec(t testing.TB) *codec {
	t.Helper()
	k, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	c, err := newCodec([]KeyPair{k}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sealAccess(t testing.TB, c *codec, name, token string) string {
	t.Helper()
	v, err := c.seal(name, &accessPayload{Token: token, SessionID: "sid-1", SessionExpiry: time.Now().Add(time.Hour).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (c *openCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.prev)
}

func TestOpenCacheServesOnlyIdenticalValues(t *testing.T) {
	c := testCodec(t)
	const name = "__Host-Http-th-at"
	v := sealAccess(t, c, name, strings.Repeat("t", 1200))
	var p accessPayload
	if err := c.open(name, v, &p); err != nil {
		t.Fatalf("open(genuine) = %v, want nil", err)
	}
	if got := c.cache.len(); got != 1 {
		t.Fatalf("cache entries after one open = %d, want 1", got)
	}
	var again accessPayload
	if err := c.open(name, v, &again); err != nil || again.Token != p.Token || again.SessionID != "sid-1" {
		t.Fatalf("open(genuine) again = %v, token %d bytes, sid %q; want nil, 1200, sid-1", err, len(again.Token), again.SessionID)
	}

	// Every single-character change, anywhere in the value, misses the cache and is
	// refused by securecookie, although the genuine value is cached.
	for i := 0; i < len(v); i += max(len(v)/97, 1) {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		var q accessPayload
		if err := c.open(name, string(b), &q); !errors.Is(err, ErrNoSession) {
			t.Fatalf("open(value changed at %d) = %v, want ErrNoSession", i, err)
		}
	}
	for _, tc := range []struct{ name, cookie, value string }{
		{"truncated", name, v[:len(v)-4]},
		{"extended", name, v + "AAAA"},
		{"other name", "__Host-Http-th-id", v},
		{"name with a suffix", name + ".0", v},
		{"empty", name, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q accessPayload
			if err := c.open(tc.cookie, tc.value, &q); !errors.Is(err, ErrNoSession) {
				t.Fatalf("open(%s) = %v, want ErrNoSession", tc.name, err)
			}
		})
	}
	if got := c.cache.len(); got != 1 {
		t.Fatalf("cache entries after refused values = %d, want 1 (only what opened)", got)
	}
}

func TestOpenCacheIgnoresExpiredEntries(t *testing.T) {
	c := testCodec(t)
	const name = "__Host-Http-th-at"
	// An entry whose securecookie timestamp has expired must not answer: plant one for a
	// value that securecookie refuses, and expect the refusal.
	forged := "MTc2Mzc3NjAwMHxmb3JnZWR8bWFj"
	empty := string([]byte{formatV1, kindAccess, 0, 0, 0, 0, 0, 0, 0, 0})
	c.cache.put(c.cache.keyOf(name, forged), empty, time.Now().Unix()-1)
	var p accessPayload
	if err := c.open(name, forged, &p); !errors.Is(err, ErrNoSession) {
		t.Fatalf("open(value with an expired entry) = %v, want ErrNoSession", err)
	}
	// The same entry while valid is what the cache answers with: proof that the test
	// above exercised the expiry and not a miss.
	c.cache.put(c.cache.keyOf(name+"x", forged), empty, time.Now().Unix()+60)
	if err := c.open(name+"x", forged, &p); err != nil {
		t.Fatalf("open(value with a valid planted entry) = %v, want nil", err)
	}
}

func TestSealedAt(t *testing.T) {
	c := testCodec(t)
	before := time.Now().Unix()
	v := sealAccess(t, c, "n", "tok")
	ts, ok := sealedAt(v)
	if !ok || ts < before || ts > time.Now().Unix() {
		t.Fatalf("sealedAt(fresh value) = %d, %v; want a time in [%d, now]", ts, ok, before)
	}
	for _, bad := range []string{"", "short", "!!!!!!!!!!!!!!!!!!!!", "fHx8fHx8fHx8fHx8fHx8", "YWJjZGVmZ2hpamtsbW5vcA==", "LTB8000000000000", "KzF8000000000000"} {
		if ts, ok := sealedAt(bad); ok {
			t.Errorf("sealedAt(%q) = %d, true; want false", bad, ts)
		}
	}
}

func TestOpenCacheIsBounded(t *testing.T) {
	oc := newOpenCache(64 << 10)
	plain := strings.Repeat("p", 1000)
	for i := range 1000 {
		oc.put(oc.keyOf("n", fmt.Sprint(i)), plain, 1<<40)
	}
	if n, most := oc.len(), (64<<10)/(1000+entryOverhead); n > most {
		t.Fatalf("entries after 1000 puts = %d, want at most %d", n, most)
	}
	// The newest entry is there; the oldest is gone.
	if _, ok := oc.get(oc.keyOf("n", "999"), 0); !ok {
		t.Error("get(newest) missed, want a hit")
	}
	if _, ok := oc.get(oc.keyOf("n", "0"), 0); ok {
		t.Error("get(oldest) hit, want a miss")
	}
	// An entry in use survives generations.
	keep := oc.keyOf("keep", "x")
	oc.put(keep, plain, 1<<40)
	for i := range 200 {
		oc.put(oc.keyOf("m", fmt.Sprint(i)), plain, 1<<40)
		if _, ok := oc.get(keep, 0); !ok {
			t.Fatalf("get(entry in use) missed after %d more puts, want a hit", i+1)
		}
	}
	// An entry larger than a generation is not stored.
	oc.put(oc.keyOf("big", "x"), strings.Repeat("b", 64<<10), 1<<40)
	if _, ok := oc.get(oc.keyOf("big", "x"), 0); ok {
		t.Error("get(entry larger than the budget) hit, want a miss")
	}
}

func TestOpenCacheConcurrent(t *testing.T) {
	c := testCodec(t)
	values := make([]string, 8)
	for i := range values {
		values[i] = sealAccess(t, c, "n", fmt.Sprintf("token-%d", i))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				v := values[(g+i)%len(values)]
				var p accessPayload
				if err := c.open("n", v, &p); err != nil || p.Token != fmt.Sprintf("token-%d", (g+i)%len(values)) {
					t.Errorf("open = %v, token %q", err, p.Token)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkOpenCache is CookieStore.Load of a proxied request (access, ID and refresh
// cookies; an access token of the given size, a 1.2 KB ID token) with the cache of opened
// cookies and without it: cache=off is the cost of a request whose cookies this process
// has not seen yet (the first after a login or a refresh).
func BenchmarkOpenCache(b *testing.B) {
	for _, size := range []int{1200, 3000} {
		for _, cached := range []bool{true, false} {
			name := fmt.Sprintf("access=%s/cache=%s", map[int]string{1200: "1.2KB", 3000: "3KB"}[size], map[bool]string{true: "on", false: "off"}[cached])
			b.Run(name, func(b *testing.B) {
				k, _ := GenerateKeyPair()
				st, err := NewCookieStore(CookieOptions{Keys: []KeyPair{k}, RefreshPaths: []string{"/api/"}})
				if err != nil {
					b.Fatal(err)
				}
				if !cached {
					st.codec.cache = nil
				}
				now := time.Now()
				s := &Session{
					ID: NewID(), Subject: "alice", SID: "sid", Name: "Alice Example", Email: "alice@example.com",
					IDToken: strings.Repeat("i", 1200), AccessToken: strings.Repeat("a", size),
					AccessIssued: now, AccessExpiry: now.Add(time.Hour), RefreshToken: strings.Repeat("r", 100),
					Expiry: now.Add(11 * time.Hour),
				}
				set, err := st.Save(context.Background(), httptest.NewRequest("GET", "/", nil), s)
				if err != nil {
					b.Fatal(err)
				}
				r := httptest.NewRequest("GET", "/api/items", nil)
				for _, c := range set {
					if c.MaxAge > 0 {
						r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
					}
				}
				ctx := context.Background()
				if _, err := st.Load(ctx, r); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					if _, err := st.Load(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// FuzzSealedAt: sealedAt reads the start of a cookie value that anyone can send; it must
// never panic, and a timestamp it reads is one that the value's first 16 characters hold.
func FuzzSealedAt(f *testing.F) {
	c := testCodec(f)
	f.Add(sealAccess(f, c, "n", "tok"))
	f.Add("MTc2Mzc3NjAwMHxmb3JnZWR8bWFj")
	f.Add("fHx8fHx8fHx8fHx8fHx8")
	f.Add("")
	f.Add("LTF8fHx8fHx8fHx8fHx8")
	f.Fuzz(func(t *testing.T, v string) {
		ts, ok := sealedAt(v)
		if !ok {
			return
		}
		if ts < 0 || len(v) < 16 {
			t.Fatalf("sealedAt(%q) = %d, true; want a non-negative time from 16 characters", v, ts)
		}
		head, err := base64.URLEncoding.DecodeString(v[:16])
		digits, _, found := strings.Cut(string(head), "|")
		if err != nil || !found || !allDigits(digits) || fmt.Sprint(ts) != strings.TrimLeft(digits, "0") && ts != 0 {
			t.Fatalf("sealedAt(%q) = %d, but the value starts with %q", v, ts, head)
		}
	})
}

// TestOpenPiecesSharesTheCache: a value carried in pieces is the same cache entry as the
// value whole, and a changed piece is refused like a changed value.
func TestOpenPiecesSharesTheCache(t *testing.T) {
	c := testCodec(t)
	const name = "__Host-Http-th-at"
	v := sealAccess(t, c, name, strings.Repeat("t", 3000))
	third := len(v) / 3
	pieces := []string{v[:third], v[third : 2*third], v[2*third:]}
	if c.cache.keyOf(name, pieces...) != c.cache.keyOf(name, v) {
		t.Fatal("keyOf(pieces) != keyOf(whole value), want the same key")
	}
	var p accessPayload
	if err := c.openPieces(name, pieces, &p); err != nil || len(p.Token) != 3000 {
		t.Fatalf("openPieces(genuine) = %v, token %d bytes; want nil, 3000", err, len(p.Token))
	}
	if got := c.cache.len(); got != 1 {
		t.Fatalf("cache entries = %d, want 1", got)
	}
	var q accessPayload
	if err := c.open(name, v, &q); err != nil || q.Token != p.Token {
		t.Fatalf("open(whole value) after openPieces = %v, want the same payload", err)
	}
	for i := range pieces {
		bad := slices.Clone(pieces)
		b := []byte(bad[i])
		b[len(b)/2] ^= 1
		bad[i] = string(b)
		if err := c.openPieces(name, bad, &q); !errors.Is(err, ErrNoSession) {
			t.Errorf("openPieces(piece %d changed) = %v, want ErrNoSession", i, err)
		}
	}
	// Pieces moved between positions are another value.
	if err := c.openPieces(name, []string{pieces[1], pieces[0], pieces[2]}, &q); !errors.Is(err, ErrNoSession) {
		t.Errorf("openPieces(pieces swapped) = %v, want ErrNoSession", err)
	}
	if got := c.cache.len(); got != 1 {
		t.Fatalf("cache entries after refused values = %d, want 1", got)
	}
}
