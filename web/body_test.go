package web

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A client that declares a body and stops sending is cut after the timeout, whether the
// handler reads the body or not; one that keeps sending slowly is not.
func TestBodyTimeout(t *testing.T) {
	const timeout = time.Second
	type result struct {
		n   int
		err error
	}
	results := make(chan result, 4)
	srv := httptest.NewServer(BodyTimeout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ignore" {
			return // leave the body to the server's discard
		}
		b, err := io.ReadAll(r.Body)
		results <- result{len(b), err}
	}), timeout))
	t.Cleanup(srv.Close)

	t.Run("stalled body is cut", func(t *testing.T) {
		conn := dial(t, srv)
		fmt.Fprintf(conn, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		select {
		case res := <-results:
			if res.err == nil || res.n != 3 {
				t.Fatalf("handler read %d bytes, err %v; want 3 and a timeout", res.n, res.err)
			}
		case <-time.After(10 * timeout):
			t.Fatal("the stalled body was not cut")
		}
	})
	t.Run("stalled body the handler ignores: connection closed", func(t *testing.T) {
		conn := dial(t, srv)
		fmt.Fprintf(conn, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
		conn.SetReadDeadline(time.Now().Add(10 * timeout))
		br := bufio.NewReader(conn)
		if _, err := http.ReadResponse(br, nil); err != nil {
			t.Fatalf("no response: %v", err)
		}
		// The server discards the rest of the body before reusing the connection: the
		// deadline ends that wait and the connection.
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Fatalf("after the answer, read = %v; want the server to close the connection", err)
		}
	})
	t.Run("slow body that keeps going is not cut", func(t *testing.T) {
		conn := dial(t, srv)
		fmt.Fprintf(conn, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
		for range 6 {
			time.Sleep(timeout / 5) // progress well within each deadline
			conn.Write([]byte("x"))
		}
		res := <-results
		if res.err != nil || res.n != 6 {
			t.Fatalf("handler read %d bytes, err %v; want all 6", res.n, res.err)
		}
	})
	t.Run("no body: untouched", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/read")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if res := <-results; res.err != nil || res.n != 0 {
			t.Fatalf("handler read %d bytes, err %v", res.n, res.err)
		}
	})
}

func dial(t *testing.T, srv *httptest.Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
