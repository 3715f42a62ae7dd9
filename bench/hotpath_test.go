//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/dpop"
	"github.com/tokenhandler/tokenhandler/josekey"
	"github.com/tokenhandler/tokenhandler/metrics"
	"github.com/tokenhandler/tokenhandler/proxy"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/tracing"
	"github.com/tokenhandler/tokenhandler/web"
)

// The hot path of a proxied request, piece by piece. Run with
//
//	go test -run '^$' -bench . ./bench
//
// Each benchmark reports cpu-ns/op, the process's CPU time per operation (GC included):
// on a machine shared with other work, wall time per op measures the neighbours too.

var sizes = []struct {
	name string
	n    int
}{{"access=1.2KB", 1200}, {"access=3KB", 3000}}

// cpuNow is the CPU time (user and system) this process has used.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f b.N times and reports cpu-ns/op.
func loop(b *testing.B, f func()) {
	b.ReportAllocs()
	cpu0 := cpuNow()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64((cpuNow()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchSession is the session of the harness's steady scenarios: an RS256 access token of
// n bytes, a 1.2 KB ID token, an opaque refresh token.
func benchSession(b *testing.B, n int) *session.Session {
	s, err := newJWTSigner("http://127.0.0.1:5556/dex")
	if err != nil {
		b.Fatal(err)
	}
	exp := time.Now().Add(6 * time.Hour)
	at, err := s.token(n, demoUser, exp)
	if err != nil {
		b.Fatal(err)
	}
	id, err := s.token(1200, demoUser, exp)
	if err != nil {
		b.Fatal(err)
	}
	return sessionFor(at, id)
}

// apiRequest is a proxied request as a browser sends it: every session cookie whose path
// matches /api/, another site cookie, the CSRF header.
func apiRequest(b *testing.B, store session.Store, s *session.Session) *http.Request {
	h, err := storeCookies(context.Background(), store, s)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/api/items?page=2", nil)
	r.Header.Set("Cookie", h)
	r.Header.Set("X-CSRF", "1")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0")
	return r
}

func newBenchStore(b *testing.B) *session.CookieStore {
	k, err := session.GenerateKeyPair()
	if err != nil {
		b.Fatal(err)
	}
	st, err := newCookieStore(k)
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkOpenSession is CookieStore.Load of a proxied request: the access, ID and
// refresh cookies opened and their session ids compared (DESIGN.md's binding check).
func BenchmarkOpenSession(b *testing.B) {
	for _, size := range sizes {
		b.Run(size.name, func(b *testing.B) {
			st := newBenchStore(b)
			r := apiRequest(b, st, benchSession(b, size.n))
			ctx := context.Background()
			if _, err := st.Load(ctx, r); err != nil {
				b.Fatalf("Load() = %v", err)
			}
			b.SetBytes(int64(len(r.Header.Get("Cookie"))))
			loop(b, func() {
				if _, err := st.Load(ctx, r); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkRawAESGCM is the baseline of the "≤ 2.5× raw AES-GCM" target: for each cookie
// of the request, a base64url decode and an AES-256-GCM open of a ciphertext of a
// plaintext as long as the cookie's (see plaintextSizes).
func BenchmarkRawAESGCM(b *testing.B) {
	for _, size := range sizes {
		b.Run(size.name, func(b *testing.B) {
			st := newBenchStore(b)
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			block, _ := aes.NewCipher(key)
			aead, _ := cipher.NewGCM(block)
			var sealed []string
			total := 0
			for _, n := range plaintextSizes(b, st, benchSession(b, size.n)) {
				plain := make([]byte, n)
				_, _ = rand.Read(plain)
				nonce := make([]byte, aead.NonceSize())
				_, _ = rand.Read(nonce)
				sealed = append(sealed, base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, nil)))
				total += len(sealed[len(sealed)-1])
			}
			b.SetBytes(int64(total))
			buf := make([]byte, 0, 8<<10)
			loop(b, func() {
				for _, v := range sealed {
					raw, err := base64.RawURLEncoding.AppendDecode(buf[:0], []byte(v))
					if err != nil {
						b.Fatal(err)
					}
					ns := aead.NonceSize()
					if _, err := aead.Open(raw[ns:ns], raw[:ns], raw[ns:], nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// plaintextSizes returns, for every cookie store seals for s, how many bytes session
// encrypted in it. It reads them from what securecookie (the sealing library) writes
// around the ciphertext, base64url("<timestamp>|" + base64url(IV + AES-CTR ciphertext)
// + "|<mac>") with a 16-byte IV, so the baseline follows session's own encoding without
// knowing it. A value carried in pieces (NAME.0, NAME.1, ...) is joined first.
func plaintextSizes(b *testing.B, store session.Store, s *session.Session) []int {
	set, err := store.Save(context.Background(), httptest.NewRequest(http.MethodGet, "/auth/callback", nil), s)
	if err != nil {
		b.Fatal(err)
	}
	values := map[string][]string{} // cookie name without piece suffix -> pieces in order
	var names []string
	for _, c := range set {
		if c.MaxAge < 0 || c.Value == "" {
			continue // a deletion
		}
		name, _, _ := strings.Cut(c.Name, ".") // pieces come in order
		if _, seen := values[name]; !seen {
			names = append(names, name)
		}
		values[name] = append(values[name], c.Value)
	}
	var sizes []int
	for _, name := range names {
		outer, err := base64.URLEncoding.DecodeString(strings.Join(values[name], ""))
		if err != nil {
			continue // not a sealed value
		}
		parts := bytes.SplitN(outer, []byte("|"), 3)
		if len(parts) != 3 {
			continue
		}
		inner, err := base64.URLEncoding.DecodeString(string(parts[1]))
		if err != nil || len(inner) <= aes.BlockSize {
			b.Fatalf("cookie %s: not a securecookie value", name)
		}
		sizes = append(sizes, len(inner)-aes.BlockSize)
	}
	if len(sizes) == 0 {
		b.Fatal("the store sealed no cookie")
	}
	return sizes
}

// noTokens is a proxy.Tokens for sessions that never need a refresh.
type noTokens struct{}

func (noTokens) Refresh(context.Context, *session.Session) (*session.Session, error) {
	return nil, fmt.Errorf("bench: unexpected refresh: %w", session.ErrIdPUnavailable)
}

// BenchmarkProxyHandler is one proxied GET through proxy.Handler with the real cookie
// store, against an in-process upstream, and the same through a bare
// httputil.ReverseProxy set up as the harness's bare proxy (tokenhandler's transport,
// buffer pool and flushing): the difference is what tokenhandler's proxy adds (the HTTP
// server and the client's side are not included).
func BenchmarkProxyHandler(b *testing.B) {
	target := benchUpstream(b)
	transport := benchTransport
	type variant struct {
		name string
		n    int
		body int // bytes of a POST body; 0: GET
	}
	variants := []variant{{"access=1.2KB", 1200, 0}, {"access=3KB", 3000, 0}, {"post=16KiB", 1200, 16 << 10}}
	request := func(b *testing.B, st session.Store, v variant) *http.Request {
		r := apiRequest(b, st, benchSession(b, v.n))
		if v.body > 0 {
			r.Method = http.MethodPost
			r.Body = io.NopCloser(bytes.NewReader(jsonBody(v.body)))
			r.ContentLength = int64(v.body)
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	for _, size := range variants {
		b.Run("tokenhandler/"+size.name, func(b *testing.B) {
			st := newBenchStore(b)
			h, err := proxy.New(st, noTokens{}, proxy.Options{
				Routes:      []proxy.Route{{Path: "/api/", Upstream: target}},
				RefreshSkew: 30 * time.Second,
				CSRF:        &web.CSRF{PublicOrigin: "http://app.example.com"},
				OwnCookie:   st.Names().Owns,
				Transport:   transport(),
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			serveLoop(b, h, request(b, st, size))
		})
		b.Run("bare/"+size.name, func(b *testing.B) {
			st := newBenchStore(b)
			tok := benchSession(b, size.n).AccessToken
			rp := bareProxy(target, tok)
			serveLoop(b, rp, request(b, st, size))
		})
	}
}

func serveLoop(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, _ = io.ReadAll(r.Body)
	}
	loop(b, func() {
		w := httptest.NewRecorder()
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status = %d, want 200: %s", w.Code, w.Body)
		}
	})
}

// BenchmarkServeStack is BenchmarkProxyHandler with what `tokenhandler serve` puts in
// front of the proxy on its public listener (see newApp in cmd/tokenhandler): the
// request log (one JSON line per request through the request-id log handler, into a
// buffered writer as tokenhandler's log output is), the request counter and the upstream
// histogram; against the bare proxy. Profile it at tokenhandler's GC settings:
//
//	GOGC=400 go test -run '^$' -bench 'ServeStack/tokenhandler/get' -cpuprofile cpu.out -memprofile mem.out ./bench
func BenchmarkServeStack(b *testing.B) {
	target := benchUpstream(b)
	transport := benchTransport
	for _, v := range []struct {
		name string
		body int
	}{{"get-1.2k", 0}, {"post-16k", 16 << 10}} {
		request := func(b *testing.B, st session.Store) *http.Request {
			r := apiRequest(b, st, benchSession(b, 1200))
			if v.body > 0 {
				r.Method = http.MethodPost
				r.Body = io.NopCloser(bytes.NewReader(jsonBody(v.body)))
				r.ContentLength = int64(v.body)
				r.Header.Set("Content-Type", "application/json")
			}
			return r
		}
		for _, tv := range []struct {
			name    string
			sampler string // "": tracing off
		}{{"tokenhandler/", ""}, {"tokenhandler-tracing-1pct/", "0.01"}} {
			b.Run(tv.name+v.name, func(b *testing.B) {
				tr := benchTracing(b, tv.sampler)
				st := newBenchStore(b)
				m := metrics.New()
				logger := slog.New(metrics.NewLogHandler(metrics.NewJSONHandler(bufio.NewWriterSize(io.Discard, 64<<10), nil)))
				px, err := proxy.New(st, noTokens{}, proxy.Options{
					Routes:      []proxy.Route{{Path: "/api/", Upstream: target}},
					RefreshSkew: 30 * time.Second,
					CSRF:        &web.CSRF{PublicOrigin: "http://app.example.com"},
					OwnCookie:   st.Names().Owns,
					Transport:   tr.Transport(transport(), "upstream"),
					Tracer:      tr.Tracer(),
					Logger:      logger,
					OnUpstream:  m.Upstream,
				})
				if err != nil {
					b.Fatal(err)
				}
				// One route's chain as cmd/tokenhandler's router builds it (newRouter): the
				// request log, tracing (off: nothing), the body timeout, CORS (none
				// configured: a no-op), the clean-path check, the route's handler.
				rh := px.Routes()[0]
				h := m.RequestLog(tr.Handler(web.BodyTimeout((&web.CORS{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !web.CleanPath(r.URL) {
						web.Error(w, http.StatusBadRequest, web.CodeBadRequest)
						return
					}
					rh.Handler.ServeHTTP(w, r)
				})), 30*time.Second), rh.Prefix), func(*http.Request) string { return rh.Prefix }, logger)
				serveLoop(b, h, request(b, st))
			})
		}
		b.Run("bare/"+v.name, func(b *testing.B) {
			st := newBenchStore(b)
			tok := benchSession(b, 1200).AccessToken
			rp := bareProxy(target, tok)
			serveLoop(b, rp, request(b, st))
		})
	}
}

// benchTracing is tracing as tracing.enabled makes it, sampling ratio of the requests
// (parent-based), exporting to a local receiver that discards; nil for ratio "".
func benchTracing(b *testing.B, ratio string) *tracing.Tracing {
	if ratio == "" {
		return nil
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(sink.Close)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
	b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	b.Setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
	tr, err := tracing.New(context.Background(), true, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr
}

// BenchmarkDPoPProof is the CPU a DPoP-bound request adds: one proof (a random jti, the
// token's SHA-256 for ath, the signature) per upstream request.
func BenchmarkDPoPProof(b *testing.B) {
	for _, alg := range []string{josekey.EdDSA, josekey.ES256} {
		b.Run(alg, func(b *testing.B) {
			k, err := josekey.Generate(alg)
			if err != nil {
				b.Fatal(err)
			}
			p, err := dpop.NewProofer(k, nil)
			if err != nil {
				b.Fatal(err)
			}
			tok := strings.Repeat("t", 1200)
			loop(b, func() {
				if _, err := p.Proof("GET", "http://127.0.0.1:9000/api/items", tok, ""); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// bareProxy is the comparison of the handler benchmarks: a plain ReverseProxy that drops
// the cookies and sends tok as Bearer, with the same transport and buffer pool.
func bareProxy(target *url.URL, tok string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Set("Authorization", "Bearer "+tok)
		},
		Transport:  benchTransport(),
		BufferPool: bufferPool{},
	}
}

// benchUpstream is the in-process API the handler benchmarks proxy to: it reads the whole
// body and answers a small JSON document.
func benchUpstream(b *testing.B) *url.URL {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"items":[1,2,3],"received":0}`)
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	return target
}

// benchTransport is the upstream transport tokenhandler's proxy and the bare proxy share.
func benchTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.DisableCompression = 1024, 256, true
	return t
}
