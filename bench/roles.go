//go:build linux

package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The harness runs its upstream and its bare proxy as child processes of its own binary
// (os.Executable with a first argument starting with "_"), so that their CPU time is
// theirs alone and the harness's own work (wrk parsing, the provider's front proxy)
// never counts against them.

// runRole runs the role named by args[0] and returns the exit status.
func runRole(args []string) int {
	var err error
	switch args[0] {
	case "_upstream":
		err = serveUpstream(args[1:])
	case "_bare":
		err = serveBare(args[1:])
	default:
		err = fmt.Errorf("unknown role %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// serveUpstream is the API behind every proxy: it answers a small JSON body, after
// reading the whole request body. It refuses (401) a request that carries neither a
// Bearer token (or a DPoP token with a proof) nor oauth2-proxy's X-Forwarded-Access-Token, so a proxy that forgot
// the token shows up as errors, not as speed. args: ADDR.
func serveUpstream(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: _upstream ADDR")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		auth := r.Header.Get("Authorization")
		bearer := len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ")
		// A DPoP-bound token (th-dpop) comes with its proof; checking the proof is the
		// API's work, not the proxy's, and is not measured here.
		dpop := len(auth) > 5 && strings.EqualFold(auth[:5], "dpop ") && r.Header.Get("DPoP") != ""
		if !bearer && !dpop && r.Header.Get("X-Forwarded-Access-Token") == "" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"items":[1,2,3],"received":`+strconv.FormatInt(n, 10)+`}`)
	})
	return serve(args[0], h)
}

// serveBare is the floor: httputil.ReverseProxy set up as tokenhandler's is (the tuned
// transport: MaxIdleConnsPerHost 256, no compression in the middle; pooled 32 KiB copy
// buffers; the default flushing, which streams what streams), doing nothing a token handler does beyond
// removing the Cookie header and setting a Bearer token (a fixed one, read from a file),
// so the upstream sees the same request. args: ADDR UPSTREAM TOKENFILE.
func serveBare(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: _bare ADDR UPSTREAM TOKENFILE")
	}
	up, err := url.Parse(args[1])
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(args[2])
	if err != nil {
		return err
	}
	bearer := "Bearer " + strings.TrimSpace(string(tok))
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.DisableCompression = true
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.SetXForwarded()
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Set("Authorization", bearer)
		},
		Transport:  t,
		BufferPool: bufferPool{},
		ErrorLog:   log.New(io.Discard, "", 0),
	}
	return serve(args[0], rp)
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers (without one it allocates a
// buffer per request).
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// serve runs h on addr with the server limits tokenhandler uses.
func serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	return srv.Serve(ln)
}
