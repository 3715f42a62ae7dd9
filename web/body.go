package web

import (
	"io"
	"net/http"
	"time"
)

// BodyTimeout cuts a request whose body makes no progress for d: the connection's read
// deadline is set to d from now when the request arrives and again before every read of
// its body, through http.ResponseController (HTTP/1.1 and HTTP/2 alike). A client that
// stops sending is cut after d, whether a handler reads the body, streams it upstream,
// or leaves it for the server to discard; a slow upload that keeps sending is not.
// Requests without a body (GET, WebSocket handshakes) are passed on untouched.
func BodyTimeout(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &progressBody{ReadCloser: r.Body, rc: rc, d: d}
		}
		next.ServeHTTP(w, r)
	})
}

// progressBody moves the read deadline before every read.
type progressBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *progressBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.ReadCloser.Read(p)
}
