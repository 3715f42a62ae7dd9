package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// sample returns the value of the series name{labels} (a counter's value or a
// histogram's sample count) and whether it exists.
func sample(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if !labelsMatch(s.GetLabel(), labels) {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount()), true
			default:
				t.Fatalf("%s has type %v", name, mf.GetType())
			}
		}
	}
	return 0, false
}

func labelsMatch(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, lp := range got {
		if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
			return false
		}
	}
	return true
}

func TestMethodsRecord(t *testing.T) {
	tests := []struct {
		name   string
		record func(m *Metrics)
		metric string
		labels map[string]string
		want   float64
	}{
		{"login", func(m *Metrics) { m.Login("success"); m.Login("success") },
			"tokenhandler_logins_total", map[string]string{"outcome": "success"}, 2},
		{"login failure", func(m *Metrics) { m.Login("invalid_state") },
			"tokenhandler_logins_total", map[string]string{"outcome": "invalid_state"}, 1},
		{"refresh count", func(m *Metrics) { m.Refresh("denied", 20*time.Millisecond) },
			"tokenhandler_refreshes_total", map[string]string{"outcome": "denied"}, 1},
		{"refresh latency", func(m *Metrics) {
			m.Refresh("success", time.Second)
			m.Refresh("success", time.Millisecond)
		}, "tokenhandler_refresh_duration_seconds", map[string]string{"outcome": "success"}, 2},
		{"upstream latency", func(m *Metrics) { m.Upstream("/api/", 200, 3*time.Millisecond) },
			"tokenhandler_upstream_duration_seconds", map[string]string{"route": "/api/"}, 1},
		{"upstream status", func(m *Metrics) { m.Upstream("/api/", 503, time.Millisecond) },
			"tokenhandler_upstream_responses_total", map[string]string{"route": "/api/", "status": "503"}, 1},
		{"upstream no answer", func(m *Metrics) { m.Upstream("/api/", 0, time.Second) },
			"tokenhandler_upstream_responses_total", map[string]string{"route": "/api/", "status": "error"}, 1},
		{"request", func(m *Metrics) { m.Request("auth", 302) },
			"tokenhandler_http_requests_total", map[string]string{"route": "auth", "status": "302"}, 1},
		{"request bad status", func(m *Metrics) { m.Request("other", 999) },
			"tokenhandler_http_requests_total", map[string]string{"route": "other", "status": "error"}, 1},
		{"redis", func(m *Metrics) { m.RedisError("get"); m.RedisError("get"); m.RedisError("set") },
			"tokenhandler_redis_errors_total", map[string]string{"op": "get"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			tc.record(m)
			got, ok := sample(t, m, tc.metric, tc.labels)
			if !ok || got != tc.want {
				t.Errorf("%s%v = %v (present %v), want %v", tc.metric, tc.labels, got, ok, tc.want)
			}
		})
	}
}

func TestRefreshLatencyBuckets(t *testing.T) {
	m := New()
	m.Refresh("success", 1500*time.Millisecond)
	mfs, _ := m.Gatherer().Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tokenhandler_refresh_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if got := h.GetSampleSum(); got != 1.5 {
			t.Errorf("refresh_duration_seconds sum = %v, want 1.5", got)
		}
		return
	}
	t.Fatal("tokenhandler_refresh_duration_seconds not gathered")
}

func TestSeriesPresentFromStart(t *testing.T) {
	m := New()
	for _, tc := range []struct {
		metric string
		labels map[string]string
	}{
		{"tokenhandler_refreshes_total", map[string]string{"outcome": "success"}},
		{"tokenhandler_logins_total", map[string]string{"outcome": "success"}},
	} {
		if got, ok := sample(t, m, tc.metric, tc.labels); !ok || got != 0 {
			t.Errorf("%s%v = %v (present %v), want 0 present", tc.metric, tc.labels, got, ok)
		}
	}
}

func TestHandlerExposition(t *testing.T) {
	m := New()
	m.Refresh("success", time.Millisecond)
	m.Request("/api/", 200)
	m.Upstream("/api/", 200, 40*time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics = %d, want 200", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`tokenhandler_refreshes_total{outcome="success"} 1`,
		`tokenhandler_http_requests_total{route="/api/",status="200"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
		"# TYPE tokenhandler_upstream_duration_seconds histogram",
		`tokenhandler_upstream_duration_seconds_bucket{route="/api/",le="0.05"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics body lacks %q", want)
		}
	}
}

func TestInstancesDoNotCollide(t *testing.T) {
	a, b := New(), New() // a shared (global) registry would panic here
	a.Login("success")
	if got, _ := sample(t, b, "tokenhandler_logins_total", map[string]string{"outcome": "success"}); got != 0 {
		t.Errorf("second instance logins_total = %v, want 0", got)
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.Login("success")
	m.Refresh("success", time.Second)
	m.Upstream("/api/", 200, time.Second)
	m.Request("auth", 200)
	m.RedisError("get")
	if tr := m.Transport(http.DefaultTransport); tr != http.DefaultTransport {
		t.Errorf("nil Metrics Transport(next) = %T, want next itself", tr)
	}
	rec := httptest.NewRecorder()
	h := m.RequestLog(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil, discardLogger())
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Body.String() != "ok" {
		t.Errorf("nil Metrics RequestLog body = %q, want ok", rec.Body.String())
	}
}

// Counts through the resolved per-route series land in the right series, from many
// goroutines at once, with the edges of the status slots: 100, 599, and "error" for 0,
// 99, 600 and negative codes sharing one series.
func TestRouteSeriesConcurrent(t *testing.T) {
	m := New()
	statuses := []int{100, 200, 599, 0, 99, 600, -1}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			route := []string{"/api/", "auth"}[g%2]
			for range 25 {
				for _, s := range statuses {
					m.Request(route, s)
					m.Upstream(route, s, time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	for _, route := range []string{"/api/", "auth"} {
		for status, want := range map[string]float64{"100": 100, "200": 100, "599": 100, "error": 400} {
			labels := map[string]string{"route": route, "status": status}
			for _, name := range []string{"tokenhandler_http_requests_total", "tokenhandler_upstream_responses_total"} {
				if got, _ := sample(t, m, name, labels); got != want {
					t.Errorf("%s%v = %v, want %v", name, labels, got, want)
				}
			}
		}
		if got, _ := sample(t, m, "tokenhandler_upstream_duration_seconds", map[string]string{"route": route}); got != 700 {
			t.Errorf("upstream_duration_seconds{%s} count = %v, want 700", route, got)
		}
	}
	// No series for a status never counted.
	if _, ok := sample(t, m, "tokenhandler_http_requests_total", map[string]string{"route": "/api/", "status": "404"}); ok {
		t.Error("http_requests_total{/api/,404} exists without a 404")
	}
}

func BenchmarkRequestCounter(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Request("/api/", 200)
		m.Upstream("/api/", 200, time.Millisecond)
	}
}
