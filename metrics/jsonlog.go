package metrics

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// NewJSONHandler returns slog's JSON handler writing to w with opts, which RequestLog can
// also write its per-request line through directly: the same bytes slog would write, in
// one Write, without building a slog.Record and without the reflection slog's JSON
// handler uses for a float (duration_ms goes through json.Marshal there). Every other
// record goes through slog as before. Writes of both paths are serialised, one line each.
func NewJSONHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	lw := &lockedWriter{w: w}
	h := &jsonHandler{Handler: slog.NewJSONHandler(lw, opts), w: lw}
	// ReplaceAttr and AddSource change what slog writes: then slog writes every line.
	h.direct = opts == nil || (opts.ReplaceAttr == nil && !opts.AddSource)
	return h
}

// jsonHandler is slog's JSON handler plus the direct path for the request line. Handlers
// derived from it (WithAttrs, WithGroup) are slog's own: their lines carry more than the
// direct path writes.
type jsonHandler struct {
	slog.Handler
	w      *lockedWriter
	direct bool
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// requestLine is the one log line RequestLog writes per request.
type requestLine struct {
	method, path, route string
	status              int
	durationMS          float64
	bytes               int64
	requestID           string
}

// requestLineWriter is a handler that can write a requestLine itself. writeRequestLine
// reports false when it did not (the caller then logs through slog); a line below the
// handler's level counts as written.
type requestLineWriter interface {
	writeRequestLine(ctx context.Context, t time.Time, l requestLine) bool
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (h *jsonHandler) writeRequestLine(ctx context.Context, t time.Time, l requestLine) bool {
	if !h.direct {
		return false
	}
	if !h.Handler.Enabled(ctx, slog.LevelInfo) {
		return true
	}
	bp := lineBufs.Get().(*[]byte)
	b, ok := appendRequestLine((*bp)[:0], t, &l)
	if ok {
		_, _ = h.w.Write(b) // as with slog.Logger, a failed log write has nobody to tell
	}
	if cap(b) <= 4<<10 {
		*bp = b
		lineBufs.Put(bp)
	}
	return ok
}

// appendRequestLine appends l as slog.NewJSONHandler writes a record at t with message
// "request", level INFO and l's fields as attributes, in order. It reports false, with
// the line unfinished, for what it does not encode as slog does: a string that needs
// escaping, a year outside 0-9999, a duration json.Marshal would write with an exponent.
func appendRequestLine(b []byte, t time.Time, l *requestLine) ([]byte, bool) {
	if y := t.Year(); y < 0 || y >= 10000 {
		return b, false
	}
	if d := math.Abs(l.durationMS); d != 0 && (d < 1e-6 || d >= 1e21 || math.IsNaN(d)) {
		return b, false
	}
	if !plainJSON(l.method) || !plainJSON(l.path) || !plainJSON(l.route) || !plainJSON(l.requestID) {
		return b, false
	}
	b = append(b, `{"time":"`...)
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","method":"`...)
	b = append(b, l.method...)
	b = append(b, `","path":"`...)
	b = append(b, l.path...)
	b = append(b, `","route":"`...)
	b = append(b, l.route...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, l.durationMS, 'f', -1, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.bytes, 10)
	b = append(b, `,"request_id":"`...)
	b = append(b, l.requestID...)
	b = append(b, "\"}\n"...)
	return b, true
}

// plainJSON reports whether slog writes s inside a JSON string as it is: printable ASCII
// (DEL included) other than '"' and '\'.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

var _ requestLineWriter = (*jsonHandler)(nil)
