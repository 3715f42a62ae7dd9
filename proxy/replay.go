package proxy

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"
)

// replayBody is the buffered body of a replayable request, kept for the one retry after
// a reactive refresh. Its buffer is lent from a pool (one per power-of-two size) rather
// than allocated per request: a 16 KiB upload otherwise costs a 16 KiB allocation, and
// the collections it brings, on every POST.
//
// The buffer goes back to the pool once nothing can read it: the exchange holds a
// reference until serve returns, and each reader holds one until it is closed (serve
// closes the one it gives ReverseProxy when ReverseProxy returns; the transport closes
// those it gets from GetBody and the retry's). A closed reader never touches the buffer
// again, even if the transport still calls Read, as it can after ReverseProxy returned
// when the upstream answered before reading the whole body: Read and Close take the
// reader's lock, so no Read is in flight once Close has released its reference, and a
// Read after Close fails. A reader that is never closed keeps its buffer out of the
// pool, which is safe: the garbage collector takes it.
type replayBody struct {
	b     []byte  // the body: a prefix of *buf
	buf   *[]byte // the pooled buffer
	class int     // log2 of len(*buf)
	refs  atomic.Int32
	mem   *memBudget // holds len(*buf) of it until the last release; nil: none
}

const (
	minReplayClass = 12 // 4 KiB: smaller bodies take a 4 KiB buffer
	maxReplayClass = 20 // 1 MiB: maxReplayBody
)

var replayPools [maxReplayClass - minReplayClass + 1]sync.Pool

var errReplayClosed = errors.New("proxy: request body read after it was closed")

// newReplayBody returns a body of n bytes (1 <= n <= maxReplayBody) for the caller to
// fill, holding one reference: the caller's, dropped with release.
func newReplayBody(n int) *replayBody {
	class := max(bits.Len(uint(n-1)), minReplayClass) // 1<<class >= n
	bp, _ := replayPools[class-minReplayClass].Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 1<<class)
		bp = &b
	}
	rb := &replayBody{b: (*bp)[:n], buf: bp, class: class}
	rb.refs.Store(1)
	return rb
}

// reader returns a new reader of the whole body, holding a reference until closed.
func (rb *replayBody) reader() io.ReadCloser {
	rb.refs.Add(1)
	return &replayReader{r: bytes.NewReader(rb.b), rb: rb}
}

// release drops one reference; the last returns the buffer to its pool and its size to
// the memory budget.
func (rb *replayBody) release() {
	if rb.refs.Add(-1) == 0 {
		replayPools[rb.class-minReplayClass].Put(rb.buf)
		if rb.mem != nil {
			rb.mem.give(1 << rb.class)
		}
	}
}

// memBudget bounds the memory of all replay buffers together (proxy.replay_memory).
type memBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports false if that would pass the bound.
func (m *memBudget) take(n int64) bool {
	if m.used.Add(n) > m.max {
		m.used.Add(-n)
		return false
	}
	return true
}

func (m *memBudget) give(n int64) { m.used.Add(-n) }

// readReplayBody reads a body of n bytes (1 <= n <= maxReplayBody) from r into a pooled
// buffer that grows as the bytes arrive (4 KiB, then doubling), never sized from the
// declared length alone: a client that declares 1 MiB and sends one byte holds 4 KiB.
// Every buffer is reserved from mem first. When mem cannot cover the next buffer,
// reading stops: complete is false, rb holds what arrived so far and the caller
// forwards the rest unbuffered. The returned body holds one reference (the caller's).
func readReplayBody(r io.Reader, n int, mem *memBudget) (rb *replayBody, complete bool, err error) {
	first := min(n, 1<<minReplayClass)
	if !mem.take(1 << minReplayClass) {
		return nil, false, nil
	}
	rb = newReplayBody(first)
	rb.mem = mem
	rb.b = rb.b[:0]
	for {
		m, err := r.Read((*rb.buf)[len(rb.b):min(n, len(*rb.buf))])
		rb.b = rb.b[:len(rb.b)+m]
		switch {
		case len(rb.b) == n:
			return rb, true, nil
		case errors.Is(err, io.EOF):
			return rb, false, io.ErrUnexpectedEOF
		case err != nil:
			return rb, false, err
		case len(rb.b) < len(*rb.buf):
			continue
		}
		// Full and more to come: move to a buffer twice the size, if mem allows.
		size := min(2*len(*rb.buf), 1<<maxReplayClass)
		if !mem.take(int64(size)) {
			return rb, false, nil
		}
		next := newReplayBody(size)
		next.mem = mem
		copy(next.b, rb.b)
		next.b = next.b[:len(rb.b)]
		rb.release()
		rb = next
	}
}

type replayReader struct {
	mu     sync.Mutex
	r      *bytes.Reader // nil once closed
	rb     *replayBody
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errReplayClosed
	}
	return r.r.Read(p)
}

func (r *replayReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed, r.r = true, nil
		r.rb.release()
	}
	return nil
}
