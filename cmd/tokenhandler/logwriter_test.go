package main

import (
	"strings"
	"testing"
	"time"
)

func TestLogWriterFlushes(t *testing.T) {
	var out syncBuffer
	lw := newLogWriter(&out)
	_, _ = lw.Write([]byte("line 1\n"))
	if out.String() != "" {
		t.Fatalf("written through at once: %q", out.String())
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out.String() != "line 1\n" {
		t.Fatalf("after the flush interval the output is %q, want line 1", out.String())
	}
	_, _ = lw.Write([]byte("line 2\n"))
	lw.Close()
	if !strings.HasSuffix(out.String(), "line 2\n") {
		t.Fatalf("Close did not flush: %q", out.String())
	}
}
