package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// Headers that re-route or re-method a request, and '_' variants of the headers
// tokenhandler sets or removes, never reach the upstream; ordinary headers do.
func TestSmuggledHeadersDropped(t *testing.T) {
	e := newEnv(t, nil)
	r := e.req("GET", "/api/x", nil)
	smuggled := []string{
		"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
		"Authorization_", "Authorization-", "X_forwarded_for", "Cookie_", "X_real_ip", "Dpop_",
		"X_request_id", "Transfer_encoding", "X_original_url",
	}
	for _, k := range smuggled {
		r.Header[k] = []string{"smuggled"}
	}
	r.Header["X-Custom_header"] = []string{"kept"}
	r.Header.Set("X-Trace", "kept")
	if w := e.do(r); w.Code != http.StatusOK {
		t.Fatalf("GET = %d, want 200", w.Code)
	}
	got := e.up.requests()[0].Header
	for _, k := range smuggled {
		if v, ok := got[k]; ok {
			t.Errorf("upstream got %s = %q, want it removed", k, v)
		}
	}
	for _, k := range []string{"X-Custom_header", "X-Trace"} {
		if got.Get(k) != "kept" && !slices.Equal(got[k], []string{"kept"}) {
			t.Errorf("upstream %s = %q, want it passed on", k, got[k])
		}
	}
	if a := got["Authorization"]; !slices.Equal(a, []string{"Bearer at-1"}) {
		t.Errorf("upstream Authorization = %q, want only ours", a)
	}
}

// From the upstream's answer the browser never gets CORS headers, Clear-Site-Data, or a
// Set-Cookie that is ours, has a Domain, or has no name; other cookies pass.
func TestUpstreamResponseHeadersCleaned(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "true")
		h["access-control-expose-headers"] = []string{"X-Secret"} // not canonical
		h.Set("Clear-Site-Data", `"cookies"`)
		h["Set-Cookie"] = []string{
			"theme=dark; Path=/; Secure",
			atName + "=planted; Path=/",
			"wide=1; Path=/; Domain=example.com",
			"wide2=1; path=/; DOMAIN=.example.com; Secure",
			"=nameless; Path=/",
			"noequals",
			"lang=en; Path=/api/; HttpOnly",
		}
		h.Set("X-Upstream", "kept")
	})
	w := e.do(e.req("GET", "/api/x", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET = %d, want 200", w.Code)
	}
	h := w.Header()
	for k := range h {
		if len(k) >= 15 && http.CanonicalHeaderKey(k[:15]) == "Access-Control-" {
			t.Errorf("client got %s = %q from the upstream", k, h[k])
		}
	}
	if v := h.Get("Clear-Site-Data"); v != "" {
		t.Errorf("client got Clear-Site-Data = %q", v)
	}
	want := []string{"theme=dark; Path=/; Secure", "lang=en; Path=/api/; HttpOnly"}
	if got := h["Set-Cookie"]; !slices.Equal(got, want) {
		t.Errorf("client Set-Cookie = %q, want %q", got, want)
	}
	if h.Get("X-Upstream") != "kept" {
		t.Error("an ordinary upstream header was dropped")
	}
}
