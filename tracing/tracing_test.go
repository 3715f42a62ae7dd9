package tracing

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tokenhandler/tokenhandler/tracing/tracingtest"
)

// A request through Handler and a call through Transport reach a real OTLP receiver as a
// server span and its client child; the upstream gets the client span in traceparent;
// an incoming traceparent is continued; no attribute carries a token, cookie or query.
func TestSpansReachTheReceiverAndTraceparentTheUpstream(t *testing.T) {
	rc := tracingtest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	tr, err := New(context.Background(), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	var upstreamTP string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamTP = r.Header.Get("Traceparent")
	}))
	t.Cleanup(upstream.Close)
	client := &http.Client{Transport: tr.Transport(http.DefaultTransport, "upstream")}
	h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, upstream.URL+"/orders?code=secret-code", nil)
		req.Header.Set("Authorization", "Bearer secret-token")
		req.Header.Set("Traceparent", "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01") // replaced
		res, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		res.Body.Close()
		w.WriteHeader(http.StatusTeapot)
	}), "/api/")
	const incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := httptest.NewRequest(http.MethodGet, "/api/orders?code=secret-code", nil)
	req.Header.Set("Traceparent", "00-"+incomingTrace+"-00f067aa0ba902b7-01")
	req.Header.Set("Cookie", "__Host-Http-th-at=secret-cookie")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}

	servers, clients := rc.Named("GET /api/"), rc.Named("upstream GET")
	if len(servers) != 1 || len(clients) != 1 {
		t.Fatalf("spans received = %d, want one server span \"GET /api/\" and one client span \"upstream GET\"", len(rc.Spans()))
	}
	server, client2 := servers[0], clients[0]
	if got := hex.EncodeToString(server.TraceId); got != incomingTrace {
		t.Errorf("server span trace id = %s, want the incoming %s", got, incomingTrace)
	}
	if got := hex.EncodeToString(server.ParentSpanId); got != "00f067aa0ba902b7" {
		t.Errorf("server span parent = %s, want the incoming span", got)
	}
	if string(client2.ParentSpanId) != string(server.SpanId) || string(client2.TraceId) != string(server.TraceId) {
		t.Error("the client span is not the server span's child")
	}
	if server.Kind != tracepb.Span_SPAN_KIND_SERVER || client2.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span kinds = %v, %v", server.Kind, client2.Kind)
	}
	if got := tracingtest.Attr(server, "http.route"); got != "/api/" {
		t.Errorf("server span http.route = %q", got)
	}
	if got := tracingtest.Attr(server, "http.response.status_code"); got != "418" {
		t.Errorf("server span http.response.status_code = %q, want 418", got)
	}
	want := "00-" + incomingTrace + "-" + hex.EncodeToString(client2.SpanId) + "-01"
	if upstreamTP != want {
		t.Errorf("upstream traceparent = %q, want %q", upstreamTP, want)
	}
	for _, s := range rc.Spans() {
		for _, a := range s.Attributes {
			if v := a.Value.String(); strings.Contains(v, "secret") {
				t.Errorf("span %q attribute %s = %s carries a secret", s.Name, a.Key, v)
			}
		}
	}
}

// Off, tracing wraps nothing and starts nothing.
func TestOffIsNothing(t *testing.T) {
	tr, err := New(context.Background(), false, "test")
	if err != nil || tr != nil {
		t.Fatalf("New(off) = %v, %v; want nil, nil", tr, err)
	}
	h := http.NotFoundHandler()
	if got := tr.Handler(h, "x"); got == nil {
		t.Fatal("Handler(off) = nil")
	}
	rt := http.DefaultTransport
	if tr.Transport(rt, "x") != rt || tr.Tracer() != nil || tr.Shutdown(context.Background()) != nil {
		t.Fatal("off tracing wrapped something")
	}
}
