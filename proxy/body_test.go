package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/session"
)

// trickle is a body that sends its first byte and then blocks until released: a client
// that declared a large Content-Length and stalled.
type trickle struct {
	sent    chan struct{} // closed when the second read starts: the first byte is taken
	release chan struct{}
	reads   int
}

func (t *trickle) Read(p []byte) (int, error) {
	t.reads++
	if t.reads == 1 {
		p[0] = 'x'
		return 1, nil
	}
	close(t.sent)
	<-t.release
	return 0, io.ErrUnexpectedEOF
}

// A declared 1 MiB body of which one byte arrived holds 4 KiB of replay memory, not
// 1 MiB: buffers grow as the body arrives, never from Content-Length alone.
func TestReplayBufferGrowsAsTheBodyArrives(t *testing.T) {
	mem := &memBudget{max: 64 << 20}
	body := &trickle{sent: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rb, complete, err := readReplayBody(body, maxReplayBody, mem)
		if complete || err == nil {
			t.Errorf("readReplayBody of a stalled body = complete %t, err %v; want incomplete with an error", complete, err)
		}
		if rb != nil {
			rb.release()
		}
	}()
	<-body.sent // the first byte was taken and the reader waits for more
	if got := mem.used.Load(); got != 1<<minReplayClass {
		t.Errorf("replay memory held for a stalled 1 MiB body = %d, want %d", got, 1<<minReplayClass)
	}
	close(body.release)
	<-done
	if got := mem.used.Load(); got != 0 {
		t.Errorf("replay memory after the request = %d, want 0", got)
	}
}

// Full bodies of every size come through intact, and every byte of replay memory is
// given back.
func TestReadReplayBodySizes(t *testing.T) {
	mem := &memBudget{max: 4 << 20}
	for _, n := range []int{1, 4095, 4096, 4097, 100_000, maxReplayBody} {
		want := bytes.Repeat([]byte("abcdefg"), n/7+1)[:n]
		rb, complete, err := readReplayBody(io.MultiReader(bytes.NewReader(want[:n/2]), bytes.NewReader(want[n/2:])), n, mem)
		if err != nil || !complete || !bytes.Equal(rb.b, want) {
			t.Fatalf("readReplayBody(%d bytes) = complete %t, err %v, equal %t", n, complete, err, bytes.Equal(rb.b, want))
		}
		rb.release()
		if got := mem.used.Load(); got != 0 {
			t.Fatalf("replay memory after a %d-byte body = %d, want 0", n, got)
		}
	}
}

// Past proxy.replay_memory a body is forwarded whole but unbuffered, and an upstream 401
// to it is passed on: it cannot be replayed.
func TestReplayMemoryExhaustedForwardsUnbuffered(t *testing.T) {
	e := newEnv(t, rejectOld(""), func(e *env, o *Options) { o.ReplayMemory = 8 << 10 })
	// Hold most of the budget, as concurrent uploads would.
	if !e.h.replayMem.take(6 << 10) {
		t.Fatal("could not take replay memory")
	}
	body := strings.Repeat("b", 20_000)
	w := e.do(e.req("POST", "/api/upload", strings.NewReader(body)))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status = %d, want the upstream's 401 passed on (no replay)", w.Code)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 || string(reqs[0].Body) != body {
		t.Fatalf("upstream saw %d requests (first body %d bytes), want 1 with the whole %d-byte body", len(reqs), len(reqs[0].Body), len(body))
	}
	if got := e.tokens.count(); got != 0 {
		t.Fatalf("refreshes = %d, want 0: an unbuffered body is never replayed", got)
	}
	e.h.replayMem.give(6 << 10)
	if got := e.h.replayMem.used.Load(); got != 0 {
		t.Fatalf("replay memory after the request = %d, want 0", got)
	}
}

// slowBody advances the clock while it is read, as a slow upload would.
type slowBody struct {
	r     io.Reader
	clock *clock
	d     time.Duration
	then  func()
}

func (b *slowBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.then != nil { // the whole (short) body arrives in this read, minutes late
		b.clock.Advance(b.d)
		b.then()
		b.then = nil
	}
	return n, err
}

// A slow upload acts on the session as it is when the body has arrived, not as it was
// loaded before: here another request rotated the tokens meanwhile, and the upstream
// gets the new access token, with no refresh of the old one.
func TestSlowUploadUsesTheLatestTokens(t *testing.T) {
	e := newEnv(t, nil)
	body := &slowBody{r: strings.NewReader("payload"), clock: e.clock, d: 2 * time.Minute, then: func() {
		e.setSession(func(s *session.Session) {
			s.AccessToken, s.RefreshToken = "at-2", "rt-2"
			s.AccessIssued, s.AccessExpiry = e.clock.Now(), e.clock.Now().Add(time.Hour)
		})
	}}
	r := e.req("POST", "/api/upload", body)
	r.ContentLength = int64(len("payload"))
	w := e.do(r)
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	reqs := e.up.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer at-2" {
		t.Fatalf("upstream requests = %+v, want one with Bearer at-2", reqs)
	}
	if got := e.tokens.count(); got != 0 {
		t.Fatalf("refreshes = %d, want 0", got)
	}
}
