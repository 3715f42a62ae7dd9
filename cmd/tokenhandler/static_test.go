package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStaticHandler(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"index.html":      "<!doctype html><title>spa</title>",
		"app.js":          "console.log(1)",
		"style.css":       "body{}",
		"docs/index.html": "<p>docs</p>",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := staticHandler(dir)
	tests := []struct {
		method, path string
		status       int
		body, ctype  string
		cache        string
	}{
		{"GET", "/", 200, "spa", "text/html", "no-cache"},
		{"GET", "/index.html", 200, "spa", "text/html", "no-cache"},
		{"GET", "/app.js", 200, "console.log", "text/javascript", "public, max-age=300"},
		{"GET", "/style.css", 200, "body", "text/css", "public, max-age=300"},
		{"GET", "/orders/42", 200, "spa", "text/html", "no-cache"}, // client-side route
		{"GET", "/docs/", 200, "docs", "text/html", "no-cache"},
		{"HEAD", "/app.js", 200, "", "text/javascript", "public, max-age=300"},
		{"GET", "/missing.js", 404, "not_found", "application/json", ""},
		// Cleaned inside the root (and refused with 400 before routing anyway): never
		// a file outside it.
		{"GET", "/../../etc/passwd", 200, "spa", "text/html", "no-cache"},
		{"GET", "/../../etc/passwd.txt", 404, "not_found", "application/json", ""},
		{"POST", "/", 405, "method_not_allowed", "application/json", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest(tc.method, "http://app.test/", nil)
			r.URL.Path = tc.path
			h.ServeHTTP(rec, r)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Fatalf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, rec.Code, rec.Body, tc.status, tc.body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.ctype)
			}
			if tc.cache != "" && rec.Header().Get("Cache-Control") != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", rec.Header().Get("Cache-Control"), tc.cache)
			}
		})
	}
}
