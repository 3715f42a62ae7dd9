package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// front is the drill's load balancer: round-robin over the replicas that are ready, as
// a Kubernetes Service or a cloud load balancer with health checks would be.
//
//   - Readiness: each replica's /readyz on its admin port is polled every 25 ms; a
//     replica that does not answer 200 gets no new requests.
//   - A request refused at connect (the replica's listener is closed: it is stopping,
//     and the last poll has not seen it yet) goes to the next ready replica. Nothing
//     else is retried: a request that may have reached a replica is never sent twice.
//   - When no replica is ready (Redis failing over makes every /readyz fail at once),
//     it sends to every replica anyway, as Envoy's panic mode does, rather than
//     refuse everything; such requests are counted.
type front struct {
	srv      *httptest.Server
	backends []*backend
	tr       *http.Transport
	next     atomic.Uint64

	refusedRetries atomic.Int64 // requests moved on after a connection refused
	panicked       atomic.Int64 // requests sent while no replica was ready
	noReplica      atomic.Int64 // requests answered 502 because every replica refused

	stop context.CancelFunc
	wg   sync.WaitGroup

	// gate: every request holds it for reading until the replica's response headers
	// arrive (by then a refresh and its write to Redis are done); the drill takes it
	// for writing to find a moment with no request in flight.
	gate sync.RWMutex

	errMu sync.Mutex
	errs  []string // the first transport errors it answered 502 for
}

// errors returns the first transport errors the front answered 502 for.
func (f *front) errors() []string {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return append([]string(nil), f.errs...)
}

type backend struct {
	name  string
	addr  string // public listener host:port
	ready atomic.Bool
	probe string // /readyz URL
	// draining: taken out of rotation before its SIGTERM, as Kubernetes removes a
	// terminating pod's endpoint (the chart's preStop delay covers the propagation).
	draining atomic.Bool
	// inflight: requests sent to it that have no response headers yet.
	inflight atomic.Int64
}

// drain takes the backend named name out of rotation and waits until no request sent
// to it is still waiting for its response headers: from then on a SIGTERM can only
// meet requests the replica has accepted, which its graceful shutdown drains.
func (f *front) drain(name string) {
	for _, b := range f.backends {
		if b.name != name {
			continue
		}
		b.draining.Store(true)
		b.ready.Store(false)
		deadline := time.Now().Add(30 * time.Second)
		for b.inflight.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a counter
		}
	}
}

// undrain puts the backend back under readiness checks.
func (f *front) undrain(name string) {
	for _, b := range f.backends {
		if b.name == name {
			b.draining.Store(false)
		}
	}
}

// newFront serves on ln, in front of replicas.
func newFront(ln net.Listener, replicas []*replica) *front {
	f := &front{tr: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second}}
	for _, r := range replicas {
		f.backends = append(f.backends, &backend{name: r.name, addr: r.addr, probe: "http://" + r.admin + "/readyz"})
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "replica" // chosen in RoundTrip
			// tokenhandler sees the public host the browser used.
			pr.Out.Host = pr.In.Host
		},
		Transport: f,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			f.errMu.Lock()
			if len(f.errs) < 5 {
				f.errs = append(f.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			f.errMu.Unlock()
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	f.srv = httptest.NewUnstartedServer(rp)
	f.srv.Listener.Close()
	f.srv.Listener = ln
	f.srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	for _, b := range f.backends {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				b.ready.Store(!b.draining.Load() && ready(ctx, b.probe))
				select {
				case <-ctx.Done():
					return
				case <-time.After(25 * time.Millisecond):
				}
			}
		}()
	}
	return f
}

// URL is the front's address: tokenhandler's public_url.
func (f *front) URL() string { return f.srv.URL }

func (f *front) close() {
	f.stop()
	f.wg.Wait()
	f.srv.Close()
	f.tr.CloseIdleConnections()
}

// RoundTrip sends req to the next ready replica, moving on to the next one only when
// the connection was refused, which means the request was not sent.
func (f *front) RoundTrip(req *http.Request) (*http.Response, error) {
	f.gate.RLock()
	defer f.gate.RUnlock()
	n := uint64(len(f.backends))
	first := f.next.Add(1)
	candidates := make([]*backend, 0, n)
	for i := range n {
		if b := f.backends[(first+i)%n]; b.ready.Load() {
			candidates = append(candidates, b)
		}
	}
	if len(candidates) == 0 {
		f.panicked.Add(1)
		for i := range n {
			if b := f.backends[(first+i)%n]; !b.draining.Load() {
				candidates = append(candidates, b)
			}
		}
	}
	var errs []error
	for i, b := range candidates {
		out := req
		if i > 0 {
			if req.Body != nil && req.Body != http.NoBody {
				if req.GetBody == nil {
					break
				}
				body, err := req.GetBody()
				if err != nil {
					break
				}
				out = req.Clone(req.Context())
				out.Body = body
			} else {
				out = req.Clone(req.Context())
			}
		}
		out.URL.Host = b.addr
		b.inflight.Add(1)
		resp, err := f.tr.RoundTrip(out)
		b.inflight.Add(-1)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
		if !refused(err) {
			return nil, errors.Join(errs...)
		}
		b.ready.Store(false) // until the next poll says otherwise
		f.refusedRetries.Add(1)
	}
	f.noReplica.Add(1)
	return nil, fmt.Errorf("front: no replica took the request: %w", errors.Join(errs...))
}

// refused reports whether err is a refused connection: the request was never sent.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNREFUSED)
}

var _ http.RoundTripper = (*front)(nil)

// drain is io.Copy to nowhere, for bodies the drill does not read.
func drain(r io.ReadCloser) {
	io.Copy(io.Discard, r)
	r.Close()
}
