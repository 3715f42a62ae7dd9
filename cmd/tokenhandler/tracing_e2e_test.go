package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/tracing/tracingtest"
)

// TestTracingEndToEnd: with tracing.enabled, a proxied request whose token is due for a
// refresh reaches a real OTLP receiver as one trace: the request's server span, the
// session's load, the refresh (which made the token call itself), the call to Hydra's
// token endpoint and the upstream call; the upstream receives the trace in traceparent;
// no span carries the session's tokens or cookies.
func TestTracingEndToEnd(t *testing.T) {
	rc := tracingtest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rc.URL)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	s := startStack(t, stackOptions{kind: "hydra", idp: idptest.Options{AccessTokenTTL: 3 * time.Second},
		env: map[string]string{"TH_TRACING_ENABLED": "true", "TH_SESSION_REFRESH_SKEW": "1h"}})
	var traceparent string
	s.api.respond = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		traceparent = r.Header.Get("Traceparent")
		return false
	}
	c := s.signIn("/")
	sess, err := s.session(c, "/api/")
	if err != nil {
		t.Fatal(err)
	}
	waitUntilRefreshDue(t, s, c)
	if resp, _ := s.apiCall(http.MethodGet, "/api/orders?code=secret", s.cookies(c, "/api/"), nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/orders = %d, want 200", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.tracing.Shutdown(ctx); err != nil {
		t.Fatalf("flushing spans: %v", err)
	}

	one := func(name string) (traceID, spanID, parentID []byte) {
		t.Helper()
		for _, sp := range rc.Named(name) {
			if tracingtest.Attr(sp, "url.path") == "/api/orders" || !strings.HasPrefix(name, "GET ") {
				return sp.TraceId, sp.SpanId, sp.ParentSpanId
			}
		}
		t.Fatalf("no span %q among %d received", name, len(rc.Spans()))
		return nil, nil, nil
	}
	trace, server, _ := one("GET /api/")
	for _, name := range []string{"session.load", "session.refresh", "upstream GET"} {
		if tr, _, parent := one(name); !bytes.Equal(tr, trace) || !bytes.Equal(parent, server) {
			t.Errorf("span %q is not a child of the request's server span", name)
		}
	}
	refresh := rc.Named("session.refresh")[0]
	if got := tracingtest.Attr(refresh, "refresh.token_call"); got != "true" {
		t.Errorf("session.refresh refresh.token_call = %q, want true", got)
	}
	if got := tracingtest.Attr(refresh, "refresh.outcome"); got != "success" {
		t.Errorf("session.refresh refresh.outcome = %q, want success", got)
	}
	tokenCall := false // the sign-in's code exchange has a span of its own, in its own trace
	for _, sp := range rc.Named("provider POST") {
		tokenCall = tokenCall || bytes.Equal(sp.TraceId, trace) && bytes.Equal(sp.ParentSpanId, refresh.SpanId)
	}
	if !tokenCall {
		t.Error("no token-endpoint span is a child of session.refresh")
	}
	_, upstreamSpan, _ := one("upstream GET")
	if want := "00-" + hex.EncodeToString(trace) + "-" + hex.EncodeToString(upstreamSpan) + "-01"; traceparent != want {
		t.Errorf("upstream traceparent = %q, want %q", traceparent, want)
	}
	secrets := []string{sess.AccessToken, sess.RefreshToken, sess.IDToken, "secret"}
	for _, ck := range c.Jar.Cookies(mustURL(s.url + "/api/")) {
		secrets = append(secrets, ck.Value)
	}
	for _, sp := range rc.Spans() {
		for _, a := range sp.Attributes {
			for _, sec := range secrets {
				if sec != "" && strings.Contains(a.Value.String(), sec) {
					t.Errorf("span %q attribute %s carries a token, cookie or query", sp.Name, a.Key)
				}
			}
		}
	}
}
