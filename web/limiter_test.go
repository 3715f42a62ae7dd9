package web

import (
	"testing"
	"time"
)

func TestLimiterBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(time.Minute, 3)
	for i, key := range []string{"a", "b", "c"} {
		if !l.Allow(key, now.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("allow(%q) = false, want true", key)
		}
	}
	if l.Allow("a", now.Add(10*time.Second)) {
		t.Fatal("allow(a) again within the window = true, want false")
	}
	if l.Allow("d", now.Add(10*time.Second)) {
		t.Fatal("allow(d) with the map full of live entries = true, want false")
	}
	if !l.Allow("d", now.Add(61*time.Second)) {
		t.Fatal("allow(d) once a's entry expired = false, want true")
	}
	if n := len(l.last); n > 3 {
		t.Fatalf("limiter holds %d entries, want at most 3", n)
	}
	if !l.Allow("a", now.Add(2*time.Minute)) {
		t.Fatal("allow(a) after its window = false, want true")
	}
}
