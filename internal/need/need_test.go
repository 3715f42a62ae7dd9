package need_test

import (
	"runtime"
	"sync"
	"testing"

	"github.com/tokenhandler/tokenhandler/internal/need"
)

func TestMissing(t *testing.T) {
	t.Setenv("CI", "")
	if f := run(func(tb testing.TB) { need.Missing(tb, "x", "because") }); !f.skipped || f.fatal {
		t.Errorf("Missing without CI: skipped %v, failed %v, want a skip", f.skipped, f.fatal)
	}
	t.Setenv("CI", "true")
	if f := run(func(tb testing.TB) { need.Missing(tb, "x", "because") }); f.skipped || !f.fatal {
		t.Errorf("Missing with CI=true: skipped %v, failed %v, want a failure", f.skipped, f.fatal)
	}
	t.Setenv("TOKENHANDLER_TEST_NOPE", "")
	if f := run(func(tb testing.TB) { need.Env(tb, "TOKENHANDLER_TEST_NOPE", "because") }); !f.fatal {
		t.Errorf("Env of an empty variable with CI=true did not fail")
	}
	t.Setenv("TOKENHANDLER_TEST_NOPE", "v")
	var got string
	if f := run(func(tb testing.TB) { got = need.Env(tb, "TOKENHANDLER_TEST_NOPE", "because") }); f.fatal || f.skipped || got != "v" {
		t.Errorf("Env of a set variable = %q (failed %v, skipped %v), want v", got, f.fatal, f.skipped)
	}
}

// fakeTB records whether a helper failed or skipped; Fatal and Skip end its goroutine
// as the real ones do.
type fakeTB struct {
	testing.TB
	fatal, skipped bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(string, ...any) {
	f.fatal = true
	runtime.Goexit()
}

func (f *fakeTB) Skipf(string, ...any) {
	f.skipped = true
	runtime.Goexit()
}

// run calls fn on its own goroutine, which Fatalf and Skipf may end early.
func run(fn func(testing.TB)) *fakeTB {
	f := &fakeTB{}
	var wg sync.WaitGroup
	wg.Go(func() { fn(f) })
	wg.Wait()
	return f
}
