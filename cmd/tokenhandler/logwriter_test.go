package main

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestLogWriterFlushes runs in a synctest bubble: the flush ticker runs on the bubble's
// clock, so the test advances exactly one interval without waiting for it.
func TestLogWriterFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		lw := newLogWriter(&out)
		_, _ = lw.Write([]byte("line 1\n"))
		synctest.Wait()
		if out.String() != "" {
			t.Fatalf("written through at once: %q", out.String())
		}
		time.Sleep(logFlushInterval) // the bubble's fake clock: no real time passes
		synctest.Wait()              // the flush loop has run and is waiting again
		if out.String() != "line 1\n" {
			t.Fatalf("after the flush interval the output is %q, want line 1", out.String())
		}
		_, _ = lw.Write([]byte("line 2\n"))
		lw.Close()
		if !strings.HasSuffix(out.String(), "line 2\n") {
			t.Fatalf("Close did not flush: %q", out.String())
		}
	})
}
