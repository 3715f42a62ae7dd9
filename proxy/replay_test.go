package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

func TestReplayBodyReaders(t *testing.T) {
	for _, n := range []int{1, 4095, 4096, 4097, 16 << 10, maxReplayBody} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			rb := newReplayBody(n)
			if len(rb.b) != n || cap(*rb.buf) < n || len(*rb.buf) != 1<<rb.class {
				t.Fatalf("newReplayBody(%d): len %d, buffer %d, class %d", n, len(rb.b), len(*rb.buf), rb.class)
			}
			for i := range rb.b {
				rb.b[i] = byte(i)
			}
			want := bytes.Clone(rb.b)
			r1, r2 := rb.reader(), rb.reader()
			for i, r := range []io.ReadCloser{r1, r2} {
				if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("reader %d read %d bytes, %v; want the %d bytes", i, len(got), err, n)
				}
			}
			if err := r1.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			if err := r1.Close(); err != nil {
				t.Fatalf("second Close() = %v, want nil", err)
			}
			if _, err := r1.Read(make([]byte, 1)); !errors.Is(err, errReplayClosed) {
				t.Fatalf("Read after Close = %v, want errReplayClosed", err)
			}
			if got := rb.refs.Load(); got != 2 {
				t.Fatalf("references with one reader closed = %d, want 2 (the owner's and r2's)", got)
			}
			rb.release()
			r2.Close()
			if got := rb.refs.Load(); got != 0 {
				t.Fatalf("references after everything closed = %d, want 0", got)
			}
		})
	}
}

// TestConcurrentUploadsKeepTheirBodies: many uploads at once, of many sizes, each reaches
// the upstream whole and its own, while their buffers go back to the pool and are lent
// again; some are answered before the upstream reads them, so that a buffer returned
// while the transport still sends it would be overwritten under it (run with -race).
func TestConcurrentUploadsKeepTheirBodies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Early") != "" {
			// Answer before reading the body: the proxy is done with the request while
			// the transport may still be sending its body.
			io.WriteString(w, "ok")
			return
		}
		got, err := io.ReadAll(r.Body)
		want := bytes.Repeat([]byte{r.Header.Get("X-Fill")[0]}, atoi(r.Header.Get("X-Len")))
		if err != nil || !bytes.Equal(got, want) {
			http.Error(w, "body mismatch", http.StatusTeapot)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	e := newEnv(t, nil, func(e *env, o *Options) { o.Routes[0].Upstream = target })
	srv := e.server()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 1 + (i*7919)%(70<<10)
			early := i%4 == 0
			if early {
				n = 512<<10 + i
			}
			fill := byte('a' + i%26)
			req, _ := http.NewRequest("POST", srv.URL+"/api/upload", bytes.NewReader(bytes.Repeat([]byte{fill}, n)))
			req.Header.Set("X-CSRF", "1")
			if early {
				req.Header.Set("X-Early", "1")
			}
			req.Header.Set("X-Fill", string(fill))
			req.Header.Set("X-Len", strconv.Itoa(n))
			req.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
			res, err := srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("POST of %d bytes of %q = %d %s", n, fill, res.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestReplayBufferGoesBack: once a request is done, its body's buffer is lent again. Each
// round the test returns a buffer of its own to the pool; if the proxy kept the buffers
// it takes, the test would never get one back that it had seen before.
func TestReplayBufferGoesBack(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusUnauthorized} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
			seen := map[*[]byte]bool{}
			reused := false
			for range 20 {
				if w := e.do(e.req("POST", "/api/x", bytes.NewReader(make([]byte, 10000)))); w.Code != status {
					t.Fatalf("POST = %d, want %d", w.Code, status)
				}
				rb := newReplayBody(10000)
				reused = reused || seen[rb.buf]
				seen[rb.buf] = true
				rb.release()
			}
			if !reused {
				t.Fatal("no body buffer came back to the pool in 20 requests")
			}
		})
	}
}
