// Package redisclient builds the go-redis client tokenhandler talks to Redis with, from
// the redis.* settings: one URL whose form chooses standalone Redis, Sentinel or Cluster,
// timeouts that keep an outage from hanging requests, TLS for rediss://.
//
// It owns the translation of those settings into redis.UniversalOptions and nothing else:
// what tokenhandler keeps in Redis belongs to package session.
package redisclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options are the redis.* settings. Zero values are documented per field.
type Options struct {
	// URL is redis://[user:password@]host[:port][/db] or rediss://... for TLS.
	//   - Sentinel: redis://[user:password@]sentinel1:26379/db?master_name=NAME&addr=sentinel2:26379
	//     (the host and every addr= are Sentinels; user:password authenticate to the
	//     master, sentinel_username=/sentinel_password= to the Sentinels);
	//   - Cluster: several addresses (the host and addr=..., or addr= alone) and no
	//     master_name; each is a seed node. A database other than 0 is refused.
	// The port defaults to 6379. Errors never quote the URL: it may hold a password.
	URL string
	// DialTimeout bounds one connection attempt; zero means 500ms.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound one command's socket I/O; zero means 500ms.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxRetries is the number of retries after a failed command; 0 means none.
	MaxRetries int
	// PoolSize is the connection pool size per node; 0 means go-redis's default
	// (10 per CPU).
	PoolSize int
	// TLSCAFile names a PEM file of CAs trusted for rediss://; empty: the system pool.
	TLSCAFile string
	// InsecureSkipVerify turns off certificate verification for rediss://.
	InsecureSkipVerify bool
}

// Defaults of Options.
const (
	DefaultDialTimeout = 500 * time.Millisecond
	DefaultIOTimeout   = 500 * time.Millisecond
)

// Mode is the kind of deployment a URL names.
type Mode string

// The deployments a URL can name.
const (
	Standalone Mode = "standalone"
	Sentinel   Mode = "sentinel"
	Cluster    Mode = "cluster"
)

// New returns a client for o. It does not connect: the first command does.
func New(o Options) (redis.UniversalClient, Mode, error) {
	uo, mode, err := Parse(o)
	if err != nil {
		return nil, "", err
	}
	return redis.NewUniversalClient(uo), mode, nil
}

// knownParams are the query parameters a URL may carry; anything else is refused, so a
// misspelt master_name cannot silently turn Sentinel into Cluster.
var knownParams = []string{"addr", "master_name", "sentinel_username", "sentinel_password"}

// Parse translates o into go-redis's options and tells which deployment the URL names.
func Parse(o Options) (*redis.UniversalOptions, Mode, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, "", errors.New("redisclient: redis.url does not parse as a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", errors.New("redisclient: redis.url must start with redis:// or rediss://")
	}
	if u.Opaque != "" || u.Fragment != "" {
		return nil, "", errors.New("redisclient: redis.url must be redis://host[:port][/db][?...]")
	}
	q, err := parseQuery(u.RawQuery)
	if err != nil {
		return nil, "", err
	}
	addrs, err := addresses(u.Host, q["addr"])
	if err != nil {
		return nil, "", err
	}

	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 || strings.Contains(p, "/") {
			return nil, "", errors.New("redisclient: redis.url has a path that is not a database number")
		}
	}

	uo := &redis.UniversalOptions{
		Addrs:       addrs,
		DB:          db,
		DialTimeout: orDefault(o.DialTimeout, DefaultDialTimeout),
		// One dial attempt per command: go-redis's default of five, with backoff in
		// between, would hold a request for seconds while Redis is down.
		DialerRetries: 1,
		ReadTimeout:   orDefault(o.ReadTimeout, DefaultIOTimeout),
		WriteTimeout:  orDefault(o.WriteTimeout, DefaultIOTimeout),
		// Deadlines of the caller's context apply too (go-redis ignores them otherwise).
		ContextTimeoutEnabled: true,
		// go-redis reads 0 as "its default of 3"; none is -1.
		MaxRetries: o.MaxRetries,
		PoolSize:   o.PoolSize,
		// Waiting for a free connection is bounded like a command.
		PoolTimeout: orDefault(o.ReadTimeout, DefaultIOTimeout) + orDefault(o.DialTimeout, DefaultDialTimeout),
	}
	if o.MaxRetries <= 0 {
		uo.MaxRetries = -1
	}
	if o.PoolSize < 0 {
		return nil, "", errors.New("redisclient: redis.pool_size must not be negative")
	}
	if u.User != nil {
		uo.Username = u.User.Username()
		uo.Password, _ = u.User.Password()
	}

	mode := Standalone
	switch {
	case q.Has("master_name"):
		if q.Get("master_name") == "" {
			return nil, "", errors.New("redisclient: redis.url has an empty master_name")
		}
		mode = Sentinel
		uo.MasterName = q.Get("master_name")
		uo.SentinelUsername = q.Get("sentinel_username")
		uo.SentinelPassword = q.Get("sentinel_password")
	case len(addrs) > 1:
		mode = Cluster
		if db != 0 {
			return nil, "", errors.New("redisclient: redis.url names a Cluster (several addresses), which has only database 0")
		}
	}
	if mode != Sentinel && (q.Has("sentinel_username") || q.Has("sentinel_password")) {
		return nil, "", errors.New("redisclient: redis.url has sentinel_username/sentinel_password without master_name")
	}

	if uo.TLSConfig, err = tlsConfig(u.Scheme, o); err != nil {
		return nil, "", err
	}
	return uo, mode, nil
}

// parseQuery parses redis.url's query, refusing unknown and repeated parameters.
func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errors.New("redisclient: redis.url has a malformed query")
	}
	for k := range q {
		if !slices.Contains(knownParams, k) {
			return nil, fmt.Errorf("redisclient: redis.url has an unknown parameter %q (known: %s)", k, strings.Join(knownParams, ", "))
		}
	}
	for _, k := range []string{"master_name", "sentinel_username", "sentinel_password"} {
		if len(q[k]) > 1 {
			return nil, fmt.Errorf("redisclient: redis.url repeats %s", k)
		}
	}
	return q, nil
}

// addresses are the URL's host and its addr= parameters, each as host:port.
func addresses(host string, extra []string) ([]string, error) {
	var addrs []string
	if host != "" {
		addrs = append(addrs, host)
	}
	addrs = append(addrs, extra...)
	if len(addrs) == 0 {
		return nil, errors.New("redisclient: redis.url has no address (a host, or addr= parameters)")
	}
	for i, a := range addrs {
		na, err := normalizeAddr(a)
		if err != nil {
			return nil, err
		}
		addrs[i] = na
	}
	return addrs, nil
}

// tlsConfig is the TLS configuration of a rediss:// URL (nil for redis://, where the TLS
// options are refused).
func tlsConfig(scheme string, o Options) (*tls.Config, error) {
	if scheme != "rediss" {
		if o.TLSCAFile != "" || o.InsecureSkipVerify {
			return nil, errors.New("redisclient: redis.tls_ca_file and redis.tls_insecure_skip_verify need a rediss:// URL")
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // the operator asked for it by name
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redisclient: redis.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("redisclient: redis.tls_ca_file holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	// ServerName is left empty: crypto/tls takes it from each address dialled, which is
	// right for every node of a Cluster or a Sentinel set.
	return tc, nil
}

// normalizeAddr returns host:port, with the port 6379 when a is a bare host.
func normalizeAddr(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = strings.Trim(a, "[]"), "6379"
	}
	n, perr := strconv.Atoi(port)
	if host == "" || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(host, "/@?#") {
		return "", errors.New("redisclient: redis.url has an address that is not host[:port]")
	}
	return net.JoinHostPort(host, port), nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// LogTo sends go-redis's own messages (reconnections, failed dials) to l at warning
// level instead of the standard logger. go-redis has one logger per process: the last
// call wins.
func LogTo(l *slog.Logger) {
	redis.SetLogger(slogLogger{l})
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	s.l.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
