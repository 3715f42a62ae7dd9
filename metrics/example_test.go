package metrics_test

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/metrics"
)

// Example wires metrics the way cmd/tokenhandler does: JSON logs carrying the request id,
// the request log around the public handler, the counting transport in the provider's
// HTTP client, and /metrics on the admin listener.
func Example() {
	logger := slog.New(metrics.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil)))
	m := metrics.New()

	providerClient := &http.Client{Timeout: 10 * time.Second, Transport: m.Transport(nil)}
	_ = providerClient // oauthagent.Options{HTTPClient: providerClient, Observer: m, ...}

	route := func(r *http.Request) string {
		switch {
		case strings.HasPrefix(r.URL.Path, "/auth/"):
			return "auth"
		case strings.HasPrefix(r.URL.Path, "/api/"):
			return "/api/" // the configured route prefix, never the raw path
		}
		return "static"
	}
	public := m.RequestLog(http.NotFoundHandler(), route, logger)

	admin := http.NewServeMux()
	admin.Handle("GET /metrics", m.Handler())
	_, _ = public, admin
}
