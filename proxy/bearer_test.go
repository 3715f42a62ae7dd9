package proxy

import (
	"strings"
	"testing"
	"unsafe"
)

func TestBearerCache(t *testing.T) {
	var c bearerCache
	tok := strings.Repeat("t", 1200)
	v := c.header(tok)
	if v != "Bearer "+tok {
		t.Fatalf("header(token) = %.20q..., want \"Bearer \" + token", v)
	}
	// The same token again: the same string, not a new copy.
	if again := c.header(strings.Clone(tok)); unsafe.StringData(again) != unsafe.StringData(v) {
		t.Error("header(same token) built a new value, want the remembered one")
	}
	if got := c.header("other"); got != "Bearer other" {
		t.Errorf("header(other) = %q, want %q", got, "Bearer other")
	}
	// Bounded: however many tokens pass, what it holds stays under the budget.
	for i := range 10_000 {
		c.header(tok[:1100] + strings.Repeat("x", i%100) + string(rune('a'+i%26)))
		if c.bytes > maxBearerBytes {
			t.Fatalf("after %d tokens the cache holds %d bytes, want at most %d", i+1, c.bytes, maxBearerBytes)
		}
	}
}
