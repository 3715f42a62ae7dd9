package proxy

import (
	"net/url"
	"testing"
)

func TestOutPath(t *testing.T) {
	tests := []struct {
		prefix, upstream string
		strip            bool
		target           string
		want             string
	}{
		{"/api/", "http://h", false, "/api/x", "/api/x"},
		{"/api/", "http://h/", false, "/api/x", "/api/x"},
		{"/api/", "http://h/base", false, "/api/x", "/base/api/x"},
		{"/api/", "http://h/base/", true, "/api/x/y", "/base/x/y"},
		{"/api/", "http://h", true, "/api/", "/"},
		{"/api/", "http://h", true, "/api/a%20b", "/a%20b"},
		{"/api/", "http://h/b%20c/", true, "/api/a%20b", "/b%20c/a%20b"},
		{"/api/", "http://h", true, "/%61pi/a%20b", "/a%20b"},
		{"/api/", "http://h", false, "/%61pi/x", "/%61pi/x"},
	}
	for _, tc := range tests {
		t.Run(tc.prefix+" "+tc.upstream+" "+tc.target, func(t *testing.T) {
			up, _ := url.Parse(tc.upstream)
			rt, err := newRoute(Route{Path: tc.prefix, Upstream: up, StripPrefix: tc.strip})
			if err != nil {
				t.Fatal(err)
			}
			in, _ := url.ParseRequestURI(tc.target)
			out := &url.URL{}
			out.Path, out.RawPath = rt.outPath(in)
			if got := out.EscapedPath(); got != tc.want {
				t.Fatalf("outPath(%q) = %q, want %q", tc.target, got, tc.want)
			}
		})
	}
}
