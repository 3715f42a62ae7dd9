package metrics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// syncBuffer is a bytes.Buffer safe for a server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// jsonLogger logs JSON through NewLogHandler into buf, as tokenhandler does: with
// NewJSONHandler, so RequestLog writes its line directly.
func jsonLogger(buf io.Writer) *slog.Logger {
	return slog.New(NewLogHandler(NewJSONHandler(buf, nil)))
}

// lines decodes every JSON log line in s.
func lines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func classify(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.URL.Path, "/auth/"):
		return "auth"
	case strings.HasPrefix(r.URL.Path, "/api/"):
		return "/api/"
	}
	return "other"
}

func TestRequestLogLine(t *testing.T) {
	const code = "SplxlOBeZQQYbYS6WxSbIA"
	const cookie = "c2VhbGVkLWNvb2tpZS12YWx1ZQ"
	const bearer = "eyJhbGciOiJSUzI1NiJ9.secret.sig"
	var buf syncBuffer
	m := New()
	h := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slog.New(NewLogHandler(slog.NewJSONHandler(&buf, nil))).InfoContext(r.Context(), "inner")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, "hello")
	}), classify, jsonLogger(&buf))

	req := httptest.NewRequest("GET", "/auth/callback?code="+code+"&state=st", nil)
	req.Header.Set("Cookie", "__Host-Http-th-at="+cookie)
	req.Header.Set("Authorization", "Bearer "+bearer)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	out := buf.String()
	for _, secret := range []string{code, "state=st", cookie, bearer, "?"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	ls := lines(t, out)
	if len(ls) != 2 {
		t.Fatalf("got %d log lines, want 2 (inner + request):\n%s", len(ls), out)
	}
	inner, line := ls[0], ls[1]
	want := map[string]any{
		"msg": "request", "method": "GET", "path": "/auth/callback", "route": "auth",
		"status": float64(302), "bytes": float64(5),
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("request log %s = %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["duration_ms"].(float64); !ok {
		t.Errorf("request log duration_ms = %v, want a number", line["duration_ms"])
	}
	id, _ := line["request_id"].(string)
	if id == "" || inner["request_id"] != id || rec.Header().Get("X-Request-Id") != id {
		t.Errorf("request_id: request line %q, inner line %v, response header %q; want one non-empty id everywhere",
			id, inner["request_id"], rec.Header().Get("X-Request-Id"))
	}
	if strings.Count(out, `"request_id"`) != 2 {
		t.Errorf("request_id appears %d times, want once per line:\n%s", strings.Count(out, `"request_id"`), out)
	}
	if v, _ := sample(t, m, "tokenhandler_http_requests_total", map[string]string{"route": "auth", "status": "302"}); v != 1 {
		t.Errorf("http_requests_total{auth,302} = %v, want 1", v)
	}
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		keep     bool
	}{
		{"sane kept", "abc-123_X.y", true},
		{"64 chars kept", strings.Repeat("a", 64), true},
		{"absent", "", false},
		{"too long", strings.Repeat("a", 65), false},
		{"newline", "abc\ndef", false},
		{"json injection", `x","status":200,"y":"`, false},
		{"space", "a b", false},
		{"unicode", "idé", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seenCtx, seenHeader string
			h := New().RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seenCtx, seenHeader = RequestID(r.Context()), r.Header.Get(RequestIDHeader)
			}), nil, discardLogger())
			req := httptest.NewRequest("GET", "/", nil)
			if tc.incoming != "" {
				req.Header[RequestIDHeader] = []string{tc.incoming}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get(RequestIDHeader)
			if tc.keep && got != tc.incoming {
				t.Errorf("response X-Request-Id = %q, want the incoming %q", got, tc.incoming)
			}
			if !tc.keep && (got == tc.incoming || !saneRequestID(got)) {
				t.Errorf("response X-Request-Id = %q, want a fresh sane id", got)
			}
			if seenCtx != got || seenHeader != got {
				t.Errorf("handler saw ctx id %q, header %q; want %q", seenCtx, seenHeader, got)
			}
		})
	}
}

func TestRequestIDsDiffer(t *testing.T) {
	h := New().RequestLog(http.NotFoundHandler(), nil, discardLogger())
	seen := map[string]bool{}
	for range 100 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		id := rec.Header().Get(RequestIDHeader)
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}

// A new id has crypto/rand.Text's form, and every position takes every character.
func TestNewRequestIDForm(t *testing.T) {
	var at [26]map[byte]bool
	for i := range at {
		at[i] = map[byte]bool{}
	}
	for range 2000 {
		id := newRequestID()
		if len(id) != 26 || strings.Trim(id, base32) != "" || !saneRequestID(id) {
			t.Fatalf("newRequestID() = %q, want 26 characters of base32", id)
		}
		for i := range id {
			at[i][id[i]] = true
		}
	}
	for i, m := range at {
		if len(m) != 32 {
			t.Errorf("position %d took %d of 32 characters in 2000 ids", i, len(m))
		}
	}
}

func TestRequestLogStatus(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  string
		bytes   float64
	}{
		{"nothing written", func(w http.ResponseWriter, r *http.Request) {}, "200", 0},
		{"write only", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "abc") }, "200", 3},
		{"early hints then 404", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNotFound)
		}, "404", 0},
		{"first status wins", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			w.WriteHeader(http.StatusOK)
		}, "401", 0},
		{"ReadFrom", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(w, strings.NewReader("0123456789"))
		}, "200", 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuffer
			m := New()
			m.RequestLog(tc.handler, classify, jsonLogger(&buf)).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/x", nil))
			if v, _ := sample(t, m, "tokenhandler_http_requests_total", map[string]string{"route": "/api/", "status": tc.status}); v != 1 {
				t.Errorf("http_requests_total{/api/,%s} = %v, want 1", tc.status, v)
			}
			l := lines(t, buf.String())[0]
			if l["bytes"] != tc.bytes {
				t.Errorf("log bytes = %v, want %v", l["bytes"], tc.bytes)
			}
		})
	}
}

func TestRequestLogPanic(t *testing.T) {
	var buf syncBuffer
	m := New()
	h := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}), classify, jsonLogger(&buf))
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recover() = %v, want the handler's panic passed on", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/x", nil))
	}()
	if v, _ := sample(t, m, "tokenhandler_http_requests_total", map[string]string{"route": "/api/", "status": "500"}); v != 1 {
		t.Errorf("http_requests_total{/api/,500} = %v, want 1", v)
	}
	if l := lines(t, buf.String()); len(l) != 1 || l[0]["status"] != float64(500) {
		t.Errorf("log after panic = %v, want one line with status 500", l)
	}
}

func TestRequestLogLongPath(t *testing.T) {
	var buf syncBuffer
	New().RequestLog(http.NotFoundHandler(), nil, jsonLogger(&buf)).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/"+strings.Repeat("a", 5000), nil))
	p, _ := lines(t, buf.String())[0]["path"].(string)
	if len(p) > maxLoggedPath+3 {
		t.Errorf("logged path has %d bytes, want at most %d", len(p), maxLoggedPath+3)
	}
}

// TestRequestLogStreamingAndHijack runs a real server: Flush reaches the client at
// once and a WebSocket-style Hijack works through the wrapper and counts as 101.
func TestRequestLogStreamingAndHijack(t *testing.T) {
	var buf syncBuffer
	m := New()
	flushed := make(chan struct{})
	wsDone := make(chan struct{})
	logged := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/stream":
			io.WriteString(w, "first\n")
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush() = %v", err)
			}
			<-flushed
			io.WriteString(w, "second\n")
		case "/api/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("Hijack() = %v", err)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi")
			brw.Flush()
		}
	}), classify, jsonLogger(&buf))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logged.ServeHTTP(w, r)
		if r.URL.Path == "/api/ws" {
			close(wsDone) // a hijacked connection's handler is not waited for by Close
		}
	}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(flushed) // the handler is still blocked: "first" arrived by Flush alone
	if err != nil || first != "first\n" {
		t.Errorf("first streamed line = %q, %v; want %q", first, err, "first\n")
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/api/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("upgrade status = %d, want 101", resp.StatusCode)
	}
	resp.Body.Close()
	srv.Close() // waits for the stream's handler
	<-wsDone    // and this for the hijacker's: both are counted and logged

	for _, status := range []string{"200", "101"} {
		if v, _ := sample(t, m, "tokenhandler_http_requests_total", map[string]string{"route": "/api/", "status": status}); v != 1 {
			t.Errorf("http_requests_total{/api/,%s} = %v, want 1", status, v)
		}
	}
}

func TestLogHandlerWithAttrsKeepsRequestID(t *testing.T) {
	var buf syncBuffer
	logger := jsonLogger(&buf).With("component", "proxy")
	logger.InfoContext(WithRequestID(t.Context(), "rid-1"), "x")
	logger.Info("no context id")
	ls := lines(t, buf.String())
	if ls[0]["request_id"] != "rid-1" || ls[0]["component"] != "proxy" {
		t.Errorf("line with context = %v, want request_id rid-1 and component proxy", ls[0])
	}
	if _, ok := ls[1]["request_id"]; ok {
		t.Errorf("line without id in context has request_id: %v", ls[1])
	}
}

// FuzzRequestLog feeds hostile request ids and paths: the log stays one JSON line per
// request, a kept id is sane, and the query string never reaches the log.
func FuzzRequestLog(f *testing.F) {
	f.Add("abc", "/auth/callback", "code=SECRET")
	f.Add("a\nb", "/x\n{\"y\":1}", "code=SECRET&state=1")
	f.Add(`","status":1,"`, "/%0a", "")
	f.Fuzz(func(t *testing.T, id, path, query string) {
		var buf syncBuffer
		h := New().RequestLog(http.NotFoundHandler(), nil, jsonLogger(&buf))
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = "/" + path
		req.URL.RawQuery = "q=QUERYMARK" + query
		req.Header[RequestIDHeader] = []string{id}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Get(RequestIDHeader)
		if !saneRequestID(got) {
			t.Fatalf("request id %q is not sane", got)
		}
		out := buf.String()
		if strings.Count(out, "\n") != 1 {
			t.Fatalf("log has %d lines, want 1: %q", strings.Count(out, "\n"), out)
		}
		if strings.Contains(out, "QUERYMARK") {
			t.Fatalf("query string reached the log: %q", out)
		}
		if l := lines(t, out); l[0]["request_id"] != got {
			t.Fatalf("logged request_id %v, want %q", l[0]["request_id"], got)
		}
	})
}

// BenchmarkRequestLog is the request log around a handler that writes a small body: the
// per-request line written directly (NewJSONHandler, as tokenhandler runs) and through
// slog's JSON handler.
func BenchmarkRequestLog(b *testing.B) {
	for _, c := range []struct {
		name string
		h    func(io.Writer) slog.Handler
	}{
		{"direct", func(w io.Writer) slog.Handler { return NewJSONHandler(w, nil) }},
		{"slog", func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := New()
			h := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"ok":true}`))
			}), classify, slog.New(NewLogHandler(c.h(io.Discard))))
			r := httptest.NewRequest("GET", "/api/items?page=2", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				clear(w.Header())
				h.ServeHTTP(w, r)
			}
		})
	}
}

type otherKey struct{}

// The request's context carries the id, keeps its parent's values and cancellation, and
// the id header values the wrapper sets are the handler's own to change.
func TestRequestLogContextAndHeaders(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), otherKey{}, "v"))
	var inner context.Context
	var respIDs []string
	h := New().RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, stop := context.WithTimeout(r.Context(), time.Hour)
		defer stop()
		inner = ctx
		if RequestID(ctx) != "rid-7" || ctx.Value(otherKey{}) != "v" {
			t.Errorf("derived context: RequestID %q, other value %v", RequestID(ctx), ctx.Value(otherKey{}))
		}
		r.Header.Add(RequestIDHeader, "second") // must not touch the response's values
		w.Header().Add(RequestIDHeader, "extra")
		respIDs = slices.Clone(w.Header()[RequestIDHeader])
		cancel() // the server's context ends: the derived one with it
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Error("derived context not cancelled with its parent")
		}
	}), nil, discardLogger())
	req := httptest.NewRequest("GET", "/x", nil).WithContext(parent)
	req.Header.Set(RequestIDHeader, "rid-7")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !errors.Is(inner.Err(), context.Canceled) {
		t.Errorf("derived context Err() = %v, want Canceled", inner.Err())
	}
	if want := []string{"rid-7", "extra"}; !slices.Equal(respIDs, want) {
		t.Errorf("response X-Request-Id = %q, want %q", respIDs, want)
	}
}
