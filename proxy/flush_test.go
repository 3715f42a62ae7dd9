package proxy

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// TestStreamingFlushesAtOnce: whatever streams (an event stream, or any response of
// unknown length, which goes out chunked) reaches the client as the upstream sends it,
// not when the upstream ends; a response of known length arrives whole.
func TestStreamingFlushesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, contentType string
		length            bool // send a Content-Length: the response does not stream
	}{
		{"event stream", "text/event-stream", false},
		{"event stream with a length", "text/event-stream; charset=utf-8", true},
		{"chunked JSON lines", "application/x-ndjson", false},
		{"chunked download", "application/octet-stream", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const first, second = "part 1\n", "part 2\n"
			release := make(chan struct{})
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.length {
					w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(second)))
				}
				io.WriteString(w, first)
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, second)
			})
			srv := e.server()
			req, _ := http.NewRequest("GET", srv.URL+"/api/stream", nil)
			req.Header.Set("X-CSRF", "1")
			req.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
			res, err := srv.Client().Do(req)
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			// The upstream holds the rest until release: the first part has to arrive now.
			line, err := br.ReadString('\n')
			close(release)
			if err != nil || line != first {
				t.Fatalf("first part = %q, %v; want %q before the upstream ends", line, err, first)
			}
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != second {
				t.Fatalf("rest = %q, %v; want %q", rest, err, second)
			}
		})
	}
}

// TestKnownLengthArrivesWhole: a response of known length is passed on whole, with its
// length, in one piece.
func TestKnownLengthArrivesWhole(t *testing.T) {
	body := `{"items":[1,2,3]}`
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	})
	srv := e.server()
	req, _ := http.NewRequest("GET", srv.URL+"/api/items", nil)
	req.Header.Set("X-CSRF", "1")
	req.AddCookie(&http.Cookie{Name: atName, Value: "c1"})
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil || string(got) != body || res.ContentLength != int64(len(body)) || len(res.TransferEncoding) != 0 {
		t.Fatalf("GET = %q, length %d, %v, %v; want %q with its length, not chunked", got, res.ContentLength, res.TransferEncoding, err, body)
	}
}
