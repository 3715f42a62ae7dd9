//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Attacker kinds.
const (
	kindStalled = "stalled"     // connects, sends nothing (not even a TLS hello)
	kindHalf    = "half-header" // sends half a request header, then nothing
	kindSlowH1  = "slow-h1"     // signed-in POST, declared body, one byte per trickle
	kindSlowH2  = "slow-h2"     // the same as a stream of one shared HTTP/2 connection
)

// attack holds the attackers' connections open until silence, then waits for the
// server to close them.
type attack struct {
	o      *options
	addr   string // host:port of the public listener
	base   string // public origin
	tls    *tls.Config
	cookie string

	ctx      context.Context // ends every attacker (stop)
	cancel   context.CancelFunc
	silent   chan struct{} // closed: send nothing more, open nothing more
	wg       sync.WaitGroup
	h2       *http.Client
	h2Conns  atomic.Int64
	open     atomic.Int64 // connections (HTTP/1.1) and streams (HTTP/2) now open
	opened   atomic.Int64 // opened in all
	dialErrs atomic.Int64

	mu       sync.Mutex
	closedAt time.Time      // the last close after silence
	answers  map[string]int // "kind: what the server did" -> times, for every close
}

func newAttack(o *options, addr, base string, roots *x509.CertPool, cookie string) *attack {
	a := &attack{o: o, addr: addr, base: base, cookie: cookie, silent: make(chan struct{}), answers: map[string]int{}}
	if roots != nil {
		a.tls = &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}, ServerName: "127.0.0.1"}
		protos := new(http.Protocols)
		protos.SetHTTP2(true)
		dialer := &net.Dialer{Timeout: 5 * time.Second}
		a.h2 = &http.Client{Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: roots},
			Protocols:       protos,
			MaxConnsPerHost: 1,
			HTTP2:           &http.HTTP2Config{StrictMaxConcurrentRequests: true, MaxConcurrentStreams: 1000},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				a.h2Conns.Add(1)
				return dialer.DialContext(ctx, network, addr)
			},
		}}
	}
	return a
}

// start launches every attacker; they open their connections at once.
func (a *attack) start(ctx context.Context) {
	a.ctx, a.cancel = context.WithCancel(ctx)
	for kind, n := range map[string]int{kindStalled: a.o.stalled, kindHalf: a.o.halfHeader, kindSlowH1: a.o.slowH1} {
		for range n {
			a.wg.Add(1)
			go a.h1(kind)
		}
	}
	if a.o.slowH2 > 0 {
		// One request first, so the connection and the server's SETTINGS exist before the
		// streams: without them the client would assume a smaller stream limit.
		req, _ := http.NewRequestWithContext(a.ctx, http.MethodGet, a.base+apiPath, nil)
		a.header(req.Header)
		if resp, err := a.h2.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		for range a.o.slowH2 {
			a.wg.Add(1)
			go a.h2Stream()
		}
	}
}

// waitOpened waits until every attacker has opened its connection or stream, at most
// limit, and returns how long that took.
func (a *attack) waitOpened(ctx context.Context, limit time.Duration) time.Duration {
	began := time.Now()
	want := int64(a.o.stalled + a.o.halfHeader + a.o.slowH1 + a.o.slowH2)
	for a.open.Load() < want && time.Since(began) < limit && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling a counter
	}
	return time.Since(began)
}

// silence makes every attacker stop sending, keeping its connection open.
func (a *attack) silence() { close(a.silent) }

// stop closes every attacker's connection and waits for them.
func (a *attack) stop() {
	a.cancel()
	a.wg.Wait()
	if a.h2 != nil {
		a.h2.CloseIdleConnections()
	}
}

func (a *attack) isSilent() bool {
	select {
	case <-a.silent:
		return true
	default:
		return false
	}
}

func (a *attack) lastClose() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closedAt
}

// closed records that the server ended an attacker's connection or stream, and how.
func (a *attack) closed(kind, how string) {
	a.open.Add(-1)
	if a.ctx.Err() != nil {
		return // closed by the drill itself (stop)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	when := "during the attack"
	if a.isSilent() {
		a.closedAt = time.Now()
		when = "after silence"
	}
	a.answers[kind+" "+when+": "+how]++
}

func (a *attack) header(h http.Header) {
	h.Set("Cookie", a.cookie)
	h.Set("X-CSRF", "1")
}

// h1 is one HTTP/1.1 attacker: it opens a connection, sends what its kind sends, and
// when the server closes the connection before silence it opens another.
func (a *attack) h1(kind string) {
	defer a.wg.Done()
	for !a.isSilent() && a.ctx.Err() == nil {
		c, err := a.dial(kind != kindStalled)
		if err != nil {
			a.dialErrs.Add(1)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-a.silent:
			case <-a.ctx.Done():
			}
			continue
		}
		a.open.Add(1)
		a.opened.Add(1)
		answer := make(chan string, 1)
		go func() { answer <- readAnswer(c) }()
		switch kind {
		case kindHalf:
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-CSRF: 1\r\nCookie: %s", apiPath, a.addr, a.cookie[:len(a.cookie)/2])
		case kindSlowH1:
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nX-CSRF: 1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
				uploadPath, a.addr, a.cookie, a.o.bodyBytes)
		}
		if done := a.hold(kind, c, answer); done {
			return
		}
	}
}

// hold trickles the body (slow kinds) until the server closes the connection (false:
// open another, unless silent) or the attack stops (true).
func (a *attack) hold(kind string, c net.Conn, answer <-chan string) bool {
	var tick <-chan time.Time
	if kind == kindSlowH1 {
		// Spread the attackers' bytes over the interval.
		t := time.NewTicker(a.o.trickle + rand.N(a.o.trickle/10+1))
		defer t.Stop()
		tick = t.C
	}
	silent := a.silent
	for {
		select {
		case how := <-answer:
			c.Close()
			a.closed(kind, how)
			return a.isSilent()
		case <-tick:
			_, _ = c.Write([]byte{'x'}) // a failed write shows as a close
		case <-silent:
			tick, silent = nil, nil
		case <-a.ctx.Done():
			c.Close()
			<-answer
			a.open.Add(-1)
			return true
		}
	}
}

func (a *attack) dial(handshake bool) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
	if err != nil || a.tls == nil || !handshake {
		return c, err
	}
	tc := tls.Client(c, a.tls)
	ctx, cancel := context.WithTimeout(a.ctx, 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// readAnswer reads until the server closes the connection and returns the status line
// of its answer, or "closed without an answer".
func readAnswer(c net.Conn) string {
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	io.Copy(io.Discard, br)
	if err != nil && line == "" {
		return "closed without an answer"
	}
	return "answered " + strings.TrimSpace(line) + ", closed"
}

// h2Stream is one HTTP/2 attacker: a POST stream over the shared connection whose body
// arrives one byte per trickle; a stream the server ends before silence is opened again.
func (a *attack) h2Stream() {
	defer a.wg.Done()
	for !a.isSilent() && a.ctx.Err() == nil {
		pr, pw := io.Pipe()
		req, _ := http.NewRequestWithContext(a.ctx, http.MethodPost, a.base+uploadPath, pr)
		req.ContentLength = a.o.bodyBytes
		a.header(req.Header)
		req.Header.Set("Content-Type", "application/octet-stream")
		a.open.Add(1)
		a.opened.Add(1)
		done := make(chan string, 1)
		go func() {
			resp, err := a.h2.Do(req)
			if err != nil {
				done <- "stream failed: " + shortErr(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- "answered " + resp.Status
		}()
		go func() {
			t := time.NewTicker(a.o.trickle + rand.N(a.o.trickle/10+1))
			defer t.Stop()
			for {
				select {
				case <-t.C:
					if _, err := pw.Write([]byte{'x'}); err != nil {
						return
					}
				case <-a.silent:
					return
				case <-a.ctx.Done():
					return
				}
			}
		}()
		select {
		case how := <-done:
			pw.CloseWithError(io.ErrClosedPipe)
			a.closed(kindSlowH2, how)
		case <-a.ctx.Done():
			pw.CloseWithError(a.ctx.Err())
			<-done
			a.open.Add(-1)
			return
		}
	}
}

// shortErr keeps an error readable in the report: the last part of its chain.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// attackSummary is what the attackers saw.
type attackSummary struct {
	opened, dialErrs, h2Conns int64
	answers                   []string // "kind: how: n", sorted
}

func (a *attack) summary() attackSummary {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := attackSummary{opened: a.opened.Load(), dialErrs: a.dialErrs.Load(), h2Conns: a.h2Conns.Load()}
	for k, n := range a.answers {
		s.answers = append(s.answers, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(s.answers)
	return s
}
