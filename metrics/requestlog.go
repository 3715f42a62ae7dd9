package metrics

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// RequestIDHeader carries the request id: taken from the client when it is sane, sent
// upstream with proxied requests, and returned on every response.
const RequestIDHeader = "X-Request-Id"

// maxLoggedPath bounds the path in a log line; the server's header cap bounds the rest.
const maxLoggedPath = 1024

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// base32 is RFC 4648's base32 alphabet, as crypto/rand.Text uses.
const base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// newRequestID returns a new request id in crypto/rand.Text's form (26 characters of
// base32, 130 random bits) from the runtime's ChaCha8 generator (math/rand/v2, seeded
// from the operating system's entropy): an id must be unique, not secret, and this costs
// 15 ns of CPU where crypto/rand.Text costs 110 ns (getrandom).
func newRequestID() string {
	var b [26]byte
	x := rand.Uint64()
	for i := range b {
		if i == 12 || i == 24 {
			x = rand.Uint64() // 12 characters of 5 bits from each 64
		}
		b[i] = base32[x&31]
		x >>= 5
	}
	return string(b[:])
}

// saneRequestID reports whether a client-sent id may be kept: 1 to 64 characters of
// [A-Za-z0-9._-], so it cannot forge log fields, split lines or grow without bound.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// RequestLog wraps next so that every request:
//
//   - gets a request id (the client's X-Request-Id when sane, else a random one) in its
//     context (see RequestID), in the X-Request-Id header passed on to next, and in the
//     response's X-Request-Id header;
//   - is counted in tokenhandler_http_requests_total under route(r) (nil means "other"),
//     which must return a bounded label, never the raw path; route sees the request as it
//     arrived, before next runs;
//   - ends with one log line at Info: method, path, route, status, duration_ms, bytes and
//     request_id. The path is logged without its query string (a callback's query holds
//     the authorization code); headers and cookies are never logged.
//
// logger nil means slog.Default(). The ResponseWriter handed to next still supports
// Flush, Hijack (WebSocket) and http.ResponseController through Unwrap.
//
// With a handler from NewJSONHandler (under NewLogHandler or not), the line is written
// without slog's Record and reflection, byte for byte as slog writes it.
func (m *Metrics) RequestLog(next http.Handler, route func(*http.Request) string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	direct, _ := logger.Handler().(requestLineWriter)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		label := "other"
		if route != nil {
			label = route(r)
		}
		method, path := r.Method, r.URL.Path
		if len(path) > maxLoggedPath {
			path = path[:maxLoggedPath] + "..."
		}

		// The recorder, the context carrying the id and the id's header values, in one
		// allocation.
		st := &requestState{recorder: recorder{ResponseWriter: w}}
		st.ctx = idContext{Context: r.Context(), id: id}
		r = r.WithContext(&st.ctx)
		// The server made this request for this handler alone: setting the header in
		// place is safe, and cloning the whole header map cost ~2 µs a request.
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if vs := r.Header[RequestIDHeader]; len(vs) != 1 || vs[0] != id {
			st.reqID[0] = id
			r.Header[RequestIDHeader] = st.reqID[:] // Set, without a slice of its own
		}
		st.respID[0] = id
		w.Header()[RequestIDHeader] = st.respID[:]
		rec := &st.recorder

		defer func() {
			p := recover()
			status := rec.status
			if !rec.wroteHeader {
				status = http.StatusOK // what net/http sends for a handler that wrote nothing
				if p != nil {
					status = http.StatusInternalServerError
				}
			}
			m.Request(label, status)
			// The line's time is start plus the monotonic time elapsed: one clock read
			// instead of the two of a second time.Now.
			elapsed := time.Since(start)
			now := start.Add(elapsed)
			line := requestLine{method: method, path: path, route: label, status: status,
				durationMS: float64(elapsed.Microseconds()) / 1000, bytes: rec.bytes, requestID: id}
			if direct == nil || !direct.writeRequestLine(r.Context(), now, line) {
				logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
					slog.String("method", line.method),
					slog.String("path", line.path),
					slog.String("route", line.route),
					slog.Int("status", line.status),
					slog.Float64("duration_ms", line.durationMS),
					slog.Int64("bytes", line.bytes),
					slog.String("request_id", line.requestID),
				)
			}
			if p != nil {
				panic(p) // net/http logs it and drops the connection, as without us
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// requestState is what RequestLog keeps for one request.
type requestState struct {
	recorder
	ctx           idContext
	reqID, respID [1]string // X-Request-Id values of the request and the response (cap 1: an Add copies)
}

// idContext is WithRequestID's context without an allocation of its own: RequestID finds
// the id, every other key is its parent's (cancellation included, so a context derived
// from it is cancelled with the server's without a goroutine).
type idContext struct {
	context.Context
	id string
}

func (c *idContext) Value(key any) any {
	if _, ok := key.(requestIDKey); ok {
		return c.id
	}
	return c.Context.Value(key)
}

// recorder notes the status and the body size a handler wrote.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	bytes       int64
}

func (w *recorder) WriteHeader(code int) {
	// 1xx answers other than 101 (103 Early Hints, 100 Continue) precede the real one.
	if !w.wroteHeader && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's sendfile path for static files.
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(w.ResponseWriter, src)
	}
	w.bytes += n
	return n, err
}

// Flush sends buffered data at once (SSE, chunked streams).
func (w *recorder) Flush() {
	if !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket); a hijacked connection that wrote no
// status switched protocols.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wroteHeader {
		w.status, w.wroteHeader = http.StatusSwitchingProtocols, true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer's other features.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// NewLogHandler wraps h so that a record logged with a context carrying a request id
// (slog.InfoContext(r.Context(), ...)) gets a request_id attribute, unless it has one.
// Inside a group (WithGroup) the attribute lands in that group, like any other.
func NewLogHandler(h slog.Handler) slog.Handler { return &logHandler{h: h} }

type logHandler struct{ h slog.Handler }

func (l *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" && !hasAttr(r, "request_id") {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return l.h.Handle(ctx, r)
}

func (l *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{h: l.h.WithAttrs(as)}
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{h: l.h.WithGroup(name)}
}

// writeRequestLine passes the request line to the handler under l, which can write it
// directly if it is NewJSONHandler's: the line carries its request_id already.
func (l *logHandler) writeRequestLine(ctx context.Context, t time.Time, line requestLine) bool {
	d, ok := l.h.(requestLineWriter)
	return ok && d.writeRequestLine(ctx, t, line)
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

var (
	_ http.Flusher  = (*recorder)(nil)
	_ http.Hijacker = (*recorder)(nil)
	_ io.ReaderFrom = (*recorder)(nil)
	_ slog.Handler  = (*logHandler)(nil)

	_ requestLineWriter = (*logHandler)(nil)
)
