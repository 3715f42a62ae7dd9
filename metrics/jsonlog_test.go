package metrics

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// slogLine is what slog.NewJSONHandler writes for l at t.
func slogLine(t *testing.T, at time.Time, l *requestLine) string {
	t.Helper()
	var buf bytes.Buffer
	r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("method", l.method),
		slog.String("path", l.path),
		slog.String("route", l.route),
		slog.Int("status", l.status),
		slog.Float64("duration_ms", l.durationMS),
		slog.Int64("bytes", l.bytes),
		slog.String("request_id", l.requestID),
	)
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// The direct request line is byte for byte slog's, and is refused where it would not be.
func TestAppendRequestLineIsSlogs(t *testing.T) {
	base := requestLine{method: "GET", path: "/api/items", route: "/api/", status: 200, durationMS: 0.123, bytes: 41, requestID: "N4ZQ2X7LKJ3ABCDEFGHIJKLMNO"}
	at := time.Date(2026, 12, 4, 22, 16, 8, 123456789, time.UTC)
	plain := []func(*requestLine){
		func(*requestLine) {},
		func(l *requestLine) { l.durationMS = 0 },
		func(l *requestLine) { l.durationMS = 1 },
		func(l *requestLine) { l.durationMS = 0.001 },
		func(l *requestLine) { l.durationMS = 12345.678 },
		func(l *requestLine) { l.durationMS = 1e20 },
		func(l *requestLine) { l.status, l.bytes = 502, 0 },
		func(l *requestLine) { l.status, l.bytes = 0, -1 },
		func(l *requestLine) { l.path = "/a<b>&c'~\x7f" },
		func(l *requestLine) { l.path, l.route, l.requestID = "", "", "" },
	}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+30*60), time.FixedZone("y", -7*3600)}
	for i, f := range plain {
		for _, z := range zones {
			l := base
			f(&l)
			got, ok := appendRequestLine(nil, at.In(z), &l)
			want := slogLine(t, at.In(z), &l)
			if !ok || string(got) != want {
				t.Errorf("case %d, %s: appendRequestLine = %q, %v; want %q, true", i, z, got, ok, want)
			}
		}
	}
	at = at.Add(-123456789) // whole seconds: RFC3339Nano drops the fraction
	if got, ok := appendRequestLine(nil, at, &base); !ok || string(got) != slogLine(t, at, &base) {
		t.Errorf("whole second: %q, %v; want %q", got, ok, slogLine(t, at, &base))
	}
	refused := []func(*requestLine){
		func(l *requestLine) { l.path = `/a"b` },
		func(l *requestLine) { l.path = `/a\b` },
		func(l *requestLine) { l.path = "/a\nb" },
		func(l *requestLine) { l.path = "/\u00e9" },
		func(l *requestLine) { l.method = "G\x00T" },
		func(l *requestLine) { l.route = "\u2028" },
		func(l *requestLine) { l.requestID = "\xff" },
		func(l *requestLine) { l.durationMS = 1e-7 },
		func(l *requestLine) { l.durationMS = 1e21 },
	}
	for i, f := range refused {
		l := base
		f(&l)
		if got, ok := appendRequestLine(nil, at, &l); ok {
			t.Errorf("refused case %d: appendRequestLine = %q, true; want false (slog: %q)", i, got, slogLine(t, at, &l))
		}
	}
	if _, ok := appendRequestLine(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), &base); ok {
		t.Error("year 10000: appendRequestLine ok, want false")
	}
}

// FuzzAppendRequestLine: whatever the fields, the direct line is slog's or refused.
func FuzzAppendRequestLine(f *testing.F) {
	f.Add("GET", "/api/x", "/api/", 200, 0.5, int64(10), "id")
	f.Add("POST", "/a\"b", "auth", 999, 1e-9, int64(-1), "\n")
	f.Fuzz(func(t *testing.T, method, path, route string, status int, d float64, n int64, id string) {
		l := requestLine{method, path, route, status, d, n, id}
		at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
		if got, ok := appendRequestLine(nil, at, &l); ok && string(got) != slogLine(t, at, &l) {
			t.Fatalf("appendRequestLine = %q, want %q", got, slogLine(t, at, &l))
		}
	})
}

var timeField = regexp.MustCompile(`^\{"time":"[^"]*",`)

// Through RequestLog: the line written directly and the line slog writes are the same
// but for the time, for a plain path and for one that needs escaping (slog writes it).
func TestRequestLogDirectMatchesSlog(t *testing.T) {
	for _, path := range []string{"/api/items", "/api/\u00e9t\u00e9/\"q\""} {
		var direct, viaSlog syncBuffer
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
		for _, c := range []struct {
			buf    *syncBuffer
			logger *slog.Logger
		}{
			{&direct, slog.New(NewLogHandler(NewJSONHandler(&direct, nil)))},
			{&viaSlog, slog.New(NewLogHandler(slog.NewJSONHandler(&viaSlog, nil)))},
		} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path = path
			req.Header.Set(RequestIDHeader, "rid-1")
			New().RequestLog(handler, classify, c.logger).ServeHTTP(httptest.NewRecorder(), req)
		}
		// duration_ms differs between the two requests too.
		norm := func(s string) string {
			s = timeField.ReplaceAllString(s, `{"time":"T",`)
			return regexp.MustCompile(`"duration_ms":[0-9.e-]+`).ReplaceAllString(s, `"duration_ms":D`)
		}
		if d, s := norm(direct.String()), norm(viaSlog.String()); d != s || !strings.Contains(d, `"request_id":"rid-1"`) {
			t.Errorf("path %q: direct line\n%s\nslog's\n%s", path, d, s)
		}
	}
}

// Below the handler's level there is no line; with ReplaceAttr slog writes every line.
func TestRequestLogDirectRespectsOptions(t *testing.T) {
	var buf syncBuffer
	h := New().RequestLog(http.NotFoundHandler(), nil, slog.New(NewLogHandler(NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if buf.String() != "" {
		t.Errorf("log at level warn = %q, want nothing", buf.String())
	}
	noTime := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	h = New().RequestLog(http.NotFoundHandler(), nil, slog.New(NewLogHandler(NewJSONHandler(&buf, noTime))))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	if out := buf.String(); strings.Contains(out, `"time"`) || !strings.Contains(out, `"msg":"request"`) {
		t.Errorf("log with ReplaceAttr dropping time = %q, want a request line without time", out)
	}
}

// Lines of both paths, written at once from many goroutines, never interleave.
func TestJSONHandlerLinesWhole(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(NewLogHandler(NewJSONHandler(&buf, nil)))
	h := New().RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "inner", "k", strings.Repeat("v", 100))
	}), nil, logger)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
			}
		}()
	}
	wg.Wait()
	if n := len(lines(t, buf.String())); n != 800 {
		t.Errorf("%d log lines, want 800", n)
	}
}
