package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	rec := httptest.NewRecorder()
	Error(rec, http.StatusUnauthorized, CodeUnauthenticated)
	if rec.Code != 401 || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("Error() = %d %v", rec.Code, rec.Header())
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body["error"] != "unauthenticated" || body["error_description"] == "" {
		t.Errorf("Error() body = %v", body)
	}
}

func TestSecureHeaders(t *testing.T) {
	h := http.Header{}
	SecureHeaders(h)
	for k, want := range map[string]string{
		"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("SecureHeaders %s = %q, want %q", k, got, want)
		}
	}
}

func TestCSRF(t *testing.T) {
	c := &CSRF{PublicOrigin: "https://app.example", AllowedOrigins: []string{"https://admin.example"}}
	tests := []struct {
		name string
		hdr  map[string][]string
		want error
	}{
		{"header and no origin", map[string][]string{"X-Csrf": {"1"}}, nil},
		{"header and public origin", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://app.example"}}, nil},
		{"header and allowed origin", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://admin.example"}}, nil},
		{"no header", map[string][]string{}, ErrCSRF},
		{"wrong value", map[string][]string{"X-Csrf": {"true"}}, ErrCSRF},
		{"header twice", map[string][]string{"X-Csrf": {"1", "1"}}, ErrCSRF},
		{"foreign origin", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://evil.example"}}, ErrOrigin},
		{"null origin", map[string][]string{"X-Csrf": {"1"}, "Origin": {"null"}}, ErrOrigin},
		{"origin with a path", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://app.example/"}}, ErrOrigin},
		{"origin look-alike", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://app.example.evil"}}, ErrOrigin},
		{"two origins", map[string][]string{"X-Csrf": {"1"}, "Origin": {"https://app.example", "https://evil.example"}}, ErrOrigin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x", nil)
			for k, vs := range tc.hdr {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if err := c.Check(r); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Check() = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("custom header name", func(t *testing.T) {
		c := &CSRF{Header: "X-Requested-By", PublicOrigin: "https://app.example"}
		r := httptest.NewRequest(http.MethodPost, "/x", nil)
		r.Header.Set("X-CSRF", "1")
		if err := c.Check(r); !errors.Is(err, ErrCSRF) {
			t.Errorf("Check() with the default header only = %v, want ErrCSRF", err)
		}
		r.Header.Set("X-Requested-By", "1")
		if err := c.Check(r); err != nil {
			t.Errorf("Check() = %v, want nil", err)
		}
	})
	t.Run("origin required", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		if err := c.CheckOrigin(r, true); !errors.Is(err, ErrOrigin) {
			t.Errorf("CheckOrigin(required) without Origin = %v, want ErrOrigin", err)
		}
	})
}

func TestCORS(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	h := (&CORS{AllowedOrigins: []string{"https://admin.example"}, AllowHeaders: []string{"X-CSRF", "Content-Type"}}).Wrap(next)
	do := func(method, origin, reqMethod string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/api/x", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if reqMethod != "" {
			r.Header.Set("Access-Control-Request-Method", reqMethod)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := do(http.MethodOptions, "https://admin.example", "POST"); rec.Code != 204 ||
		rec.Header().Get("Access-Control-Allow-Origin") != "https://admin.example" ||
		rec.Header().Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(rec.Header().Get("Access-Control-Allow-Headers"), "X-CSRF") ||
		rec.Header().Get("Vary") != "Origin" {
		t.Errorf("allowed preflight = %d %v", rec.Code, rec.Header())
	}
	if rec := do(http.MethodOptions, "https://evil.example", "POST"); rec.Code != 403 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight = %d %v, want 403 without CORS headers", rec.Code, rec.Header())
	}
	if rec := do(http.MethodGet, "https://admin.example", ""); rec.Code != 299 || rec.Header().Get("Access-Control-Allow-Origin") != "https://admin.example" {
		t.Errorf("allowed request = %d %v", rec.Code, rec.Header())
	}
	if rec := do(http.MethodGet, "https://evil.example", ""); rec.Code != 299 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign request = %d %v, want passed on without CORS headers", rec.Code, rec.Header())
	}
	off := (&CORS{}).Wrap(next)
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodOptions, "/api/x", nil)
	r.Header.Set("Origin", "https://admin.example")
	r.Header.Set("Access-Control-Request-Method", "POST")
	off.ServeHTTP(rec, r)
	if rec.Code != 299 || rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS off: preflight = %d %v, want passed on untouched", rec.Code, rec.Header())
	}
}
