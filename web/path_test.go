package web

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		target string
		want   bool
	}{
		{"/", true},
		{"/api/", true},
		{"/api/items", true},
		{"/api/items/", true},
		{"/api/a%20b", true},
		{"/api/caf%C3%A9", true},
		{"/api/...", true},
		{"/api/.well-known/x", true},
		{"/api/a.b/c..d", true},
		{"/api/%41", true},
		{"/api/%25", true},
		{"/api/x?a=../b;c", true}, // the query is not the path
		{"/api/%2", false},        // not even a URL
		{"/api/..", false},
		{"/api/../admin", false},
		{"/api/./x", false},
		{"/api/.", false},
		{"/./api/", false},
		{"/..", false},
		{"/api//x", false},
		{"//api/x", false},
		{"/api/x//", false},
		{"/api/a;b", false},
		{"/api/%3b", false}, // decoded, it is a ";" all the same
		{"/api/a\\b", false},
		{"/api/%5c", false},
		{"/api/%5C", false},
		{"/api/%2e%2e/x", false},
		{"/api/%2E%2e/x", false},
		{"/api/%2e", false},
		{"/api/a%2eb", false},
		{"/api/%2f", false},
		{"/api/%2F", false},
		{"/api/%00", false},
		{"/api/%252e%252e/", false},
		{"/api/%252F", false},
		{"/api/%255c", false},
		{"/api/%2500", false},
		{"/api/a%0ab", false},
		{"/api/a%0Db", false},
		{"/api/a%7Fb", false},
		{"/api/a%09b", false},
		{"*", false},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			u, err := url.ParseRequestURI(tc.target)
			if err != nil {
				if tc.want {
					t.Fatalf("ParseRequestURI(%q) = %v", tc.target, err)
				}
				return // net/http refuses it before any handler
			}
			if got := CleanPath(u); got != tc.want {
				t.Fatalf("CleanPath(%q) = %t, want %t", tc.target, got, tc.want)
			}
		})
	}

	for _, u := range []*url.URL{
		nil,
		{Opaque: "x"},
		{Path: ""},
		{Path: "api/x"},
		{Path: "/api/\x00"},
		{Path: "/api/x", RawPath: "/api/%2e"},
		{Path: "/api/a/b", RawPath: "/api/a%2Fb"},
	} {
		if CleanPath(u) {
			t.Errorf("CleanPath(%#v) = true, want false", u)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/", "/api/x", "/api/../x", "/api/%2e%2e/x", "/api/%2E%2e", "/api//x", "/api/a;b",
		"/api/%2f", "/api/%5c", "/api/%00", "/api/a\\b", "/api/./x", "/api/%252e", "/api/a%20b?q=1",
		"/api/%c0%ae%c0%ae/", "/api/.%2e/", "/api/%u002e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		if !CleanPath(u) {
			return
		}
		p := u.Path
		for _, forms := range []string{p, u.RawPath, u.EscapedPath()} {
			lower := strings.ToLower(forms)
			for _, bad := range []string{"%2e", "%2f", "%5c", "%00"} {
				if strings.Contains(lower, bad) {
					t.Fatalf("CleanPath(%q) = true with %s in %q", target, bad, forms)
				}
			}
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "//") || strings.ContainsAny(p, "\\;\x00") {
			t.Fatalf("CleanPath(%q) = true for path %q", target, p)
		}
		for i := 0; i < len(p); i++ {
			if p[i] < 0x20 || p[i] == 0x7f {
				t.Fatalf("CleanPath(%q) = true with control byte %#x", target, p[i])
			}
		}
		// A clean path is its own path.Clean, but for a trailing slash.
		if c := path.Clean(p); c != strings.TrimSuffix(p, "/") && c != p {
			t.Fatalf("CleanPath(%q) = true but path.Clean(%q) = %q", target, p, c)
		}
	})
}
