package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/web"
)

// wsAccept is the Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsUpstream answers a WebSocket handshake by hand with 101, then echoes one line.
func wsUpstream(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not an upgrade", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	brw.Flush()
	line, err := brw.ReadString('\n')
	if err != nil {
		return
	}
	brw.WriteString("echo: " + line)
	brw.Flush()
}

const wsKey = "dGhlIHNhbXBsZSBub25jZQ=="

func wsHandshake(origin string) string {
	h := "GET /api/ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Cookie: " + atName + "=c1\r\nAuthorization: Bearer evil\r\n"
	if origin != "" {
		h += "Origin: " + origin + "\r\n"
	}
	return h + "\r\n"
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t, wsUpstream, func(e *env, o *Options) {
		o.Routes[0].Timeout = 50 * time.Millisecond // the connection outlives it
	})
	addr := strings.TrimPrefix(e.server().URL, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, wsHandshake(publicOrigin))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the handshake answer: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake = %d, want 101", res.StatusCode)
	}
	if got, want := res.Header.Get("Sec-WebSocket-Accept"), wsAccept(wsKey); got != want {
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, want)
	}
	time.Sleep(150 * time.Millisecond) // longer than the route's timeout
	io.WriteString(c, "hello\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("echo through the proxy = %q, %v; want %q", line, err, "echo: hello\n")
	}

	reqs := e.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(reqs))
	}
	h := reqs[0].Header
	if got := h["Authorization"]; len(got) != 1 || got[0] != "Bearer at-1" {
		t.Fatalf("handshake Authorization = %q, want [Bearer at-1]", got)
	}
	if got := h.Get("Cookie"); got != "" {
		t.Fatalf("handshake Cookie = %q, want none", got)
	}
	if h.Get("Sec-WebSocket-Key") != wsKey || !headerHasToken(h["Connection"], "upgrade") {
		t.Fatalf("handshake headers = %v, want the key and Connection: Upgrade", h)
	}

	for _, origin := range []string{"", "https://evil.example"} {
		t.Run("origin "+origin, func(t *testing.T) {
			res, body := rawRequest(t, addr, wsHandshake(origin))
			if res.StatusCode != http.StatusForbidden || errorCode(t, body) != web.CodeOriginNotAllowed {
				t.Fatalf("handshake with Origin %q = %d %s, want 403 origin_not_allowed", origin, res.StatusCode, body)
			}
		})
	}
	if got := len(e.up.requests()); got != 1 {
		t.Fatalf("upstream saw %d requests, want 1 (refused handshakes never forwarded)", got)
	}
}

func TestOtherUpgradesRemoved(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name   string
		header map[string][]string
	}{
		{"h2c", map[string][]string{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}}},
		{"websocket among others", map[string][]string{"Connection": {"upgrade"}, "Upgrade": {"websocket, h2c"}}},
		{"upgrade without connection", map[string][]string{"Upgrade": {"h2c"}}},
		{"tls", map[string][]string{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"TLS/1.2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.req("GET", "/api/x", nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			if w := e.do(r); w.Code != http.StatusOK {
				t.Fatalf("GET = %d, want 200 (%q)", w.Code, w.Body)
			}
			reqs := e.up.requests()
			h := reqs[len(reqs)-1].Header
			if h.Get("Upgrade") != "" || headerHasToken(h["Connection"], "upgrade") || h.Get("Http2-Settings") != "" {
				t.Fatalf("upstream headers = %v, want no Upgrade, no Connection: upgrade, no HTTP2-Settings", h)
			}
			if got := h.Get("Authorization"); got != "Bearer at-1" {
				t.Fatalf("upstream Authorization = %q, want %q", got, "Bearer at-1")
			}
		})
	}
	// Only the request we forward changes: the client's own header map is left alone.
	r := e.req("GET", "/api/x", nil)
	r.Header.Set("Upgrade", "h2c")
	e.do(r)
	if r.Header.Get("Upgrade") != "h2c" {
		t.Fatal("the inbound request's Upgrade header was modified")
	}
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		time.Sleep(150 * time.Millisecond) // the stream outlasts the route's timeout
		io.WriteString(w, "data: 2\n\n")
	}, func(e *env, o *Options) {
		o.Routes[0].Timeout = 50 * time.Millisecond
	})
	srv := e.server()
	req, _ := http.NewRequest("GET", srv.URL+"/api/events", nil)
	req.Header.Set("X-CSRF", "1")
	req.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET = %d, want 200", res.StatusCode)
	}
	br := bufio.NewReader(res.Body)
	// The upstream waits for release before it ends: the first event has to arrive now.
	if line, err := br.ReadString('\n'); err != nil || line != "data: 1\n" {
		t.Fatalf("first line = %q, %v; want %q", line, err, "data: 1\n")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v (cut by the route timeout?)", err)
	}
	if got, want := string(rest), "\ndata: 2\n\n"; got != want {
		t.Fatalf("rest of the stream = %q, want %q", got, want)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		e := newEnv(t, nil)
		e.opts.Routes[0].Upstream.Host = addr
		h, err := New(e.store, e.tokens, e.opts)
		if err != nil {
			t.Fatal(err)
		}
		e.h = h
		wantError(t, e.do(e.req("GET", "/api/x", nil)), http.StatusBadGateway, web.CodeUpstreamUnavailable)
		if got := e.upstreams; len(got) != 1 || got[0] != "/api/ 502" {
			t.Fatalf("OnUpstream calls = %q, want [\"/api/ 502\"]", got)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, func(e *env, o *Options) {
			o.Routes[0].Timeout = 50 * time.Millisecond
		})
		wantError(t, e.do(e.req("GET", "/api/x", nil)), http.StatusGatewayTimeout, web.CodeUpstreamTimeout)
		if got := e.upstreams; len(got) != 1 || got[0] != "/api/ 504" {
			t.Fatalf("OnUpstream calls = %q, want [\"/api/ 504\"]", got)
		}
	})
	t.Run("connection dropped", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		})
		wantError(t, e.do(e.req("GET", "/api/x", nil)), http.StatusBadGateway, web.CodeUpstreamUnavailable)
	})
}

func TestClientGone(t *testing.T) {
	arrived := make(chan struct{})
	reported := make(chan string, 1)
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the proxy cancels the upstream request when the client leaves
	}, func(e *env, o *Options) {
		o.OnUpstream = func(route string, status int, _ time.Duration) { reported <- fmt.Sprint(route, " ", status) }
	})
	srv := e.server()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/slow", nil)
	req.Header.Set("X-CSRF", "1")
	req.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
	go func() {
		<-arrived
		cancel()
	}()
	if res, err := srv.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("GET = %d, want the client's own cancellation", res.StatusCode)
	}
	select {
	case got := <-reported:
		if got != "/api/ 499" {
			t.Fatalf("OnUpstream = %q, want %q", got, "/api/ 499")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnUpstream was not called after the client left")
	}
}
