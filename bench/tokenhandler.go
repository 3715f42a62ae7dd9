//go:build linux

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/session"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
	"github.com/tokenhandler/tokenhandler/josekey"
)

// thInstance is one running tokenhandler.
type thInstance struct {
	name  string // setup name: th-cookie, th-redis
	URL   string // public origin
	Admin string // admin origin
	proc  *testbench.Process
}

// thConfig is what differs between the tokenhandler instances of a run.
type thConfig struct {
	name     string
	issuer   string
	secret   string
	keys     session.KeyPair
	upstream string
	redisURL string // non-empty: session.store redis
	lifetime time.Duration
	port     int    // public port; 0: a free one
	logLevel string // "": info, the default (one line per request)
	// dpopKeyFile, when set, turns oidc.dpop on with this key (dpop.key_file).
	dpopKeyFile string
	env         []string // added to the process's environment
}

// refreshPaths are the paths tokenhandler sets the refresh cookie on, with the one
// route /api/ (see newApp in cmd/tokenhandler).
var refreshPaths = []string{"/auth/refresh", "/auth/logout", "/auth/userinfo", "/api/"}

// buildTokenhandler builds ./cmd/tokenhandler of the clone at root into dir.
func buildTokenhandler(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "tokenhandler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tokenhandler")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/tokenhandler: %w\n%s", err, out)
	}
	return bin, nil
}

// startTokenhandler writes a configuration for c and starts tokenhandler with it. It
// returns at once; wait with ready.
func startTokenhandler(ps *procs, bin, dir string, c thConfig) (*thInstance, error) {
	ports, err := testbench.FreePorts(3)
	if err != nil {
		return nil, err
	}
	if c.port != 0 {
		if ports[1] == c.port {
			ports[1] = ports[2]
		}
		ports[0] = c.port
	}
	pub := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	store := "cookie"
	if c.redisURL != "" {
		store = "redis"
	}
	lifetime := c.lifetime
	if lifetime == 0 {
		lifetime = 12 * time.Hour
	}
	cfg := map[string]any{
		"listen":       fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"admin_listen": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"public_url":   pub,
		"oidc": map[string]any{
			"issuer":        c.issuer,
			"client_id":     clientID,
			"client_secret": c.secret,
			"scopes":        []string{"openid", "profile", "email", "offline_access"},
		},
		"cookies": map[string]any{"keys": []string{c.keys.Reveal()}, "secure": true},
		"session": map[string]any{"store": store, "lifetime": lifetime.String()},
		"routes":  []map[string]any{{"path": "/api/", "upstream": c.upstream}},
		// The default: one JSON line per request, as in production.
		"log": map[string]any{"level": cmp.Or(c.logLevel, "info"), "format": "json"},
	}
	if c.redisURL != "" {
		cfg["redis"] = map[string]any{"url": c.redisURL}
	}
	if c.dpopKeyFile != "" {
		cfg["oidc"].(map[string]any)["dpop"] = true
		cfg["dpop"] = map[string]any{"key_file": c.dpopKeyFile}
	}
	b, err := json.Marshal(cfg) // JSON is YAML
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.yaml", c.name, ports[0]))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	p, err := ps.start(c.name, bin, []string{"serve", "--config", path}, c.env, filepath.Join(dir, fmt.Sprintf("%s-%d.log", c.name, ports[0])))
	if err != nil {
		return nil, err
	}
	return &thInstance{name: c.name, URL: pub, Admin: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), proc: p}, nil
}

// writeDPoPKey writes a fresh Ed25519 DPoP key into dir and returns its path.
func writeDPoPKey(dir string) (string, error) {
	k, err := josekey.Generate(josekey.EdDSA)
	if err != nil {
		return "", err
	}
	b, err := k.PEM()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "dpop.pem")
	return path, os.WriteFile(path, b, 0o600)
}

// ready waits for /readyz (the provider discovered, Redis reachable) and returns when
// it answered 200.
func (t *thInstance) ready(ctx context.Context, timeout time.Duration) (time.Time, error) {
	return waitHTTP(ctx, t.proc, t.Admin+"/readyz", http.StatusOK, timeout)
}

// sessionFor is a session as tokenhandler's callback would store it, with the given
// tokens, valid for hours (no refresh during a steady run).
func sessionFor(access, id string) *session.Session {
	now := time.Now()
	return &session.Session{
		ID:           session.NewID(),
		Subject:      demoUser,
		SID:          testbench.RandomHex(8),
		Name:         "Alice Example",
		Email:        demoEmail,
		IDToken:      id,
		AccessToken:  access,
		AccessIssued: now,
		AccessExpiry: now.Add(6 * time.Hour),
		RefreshToken: "ChlvYXV0aF9yZWZyZXNoX3Rva2VuX2JlbmNoEhl" + testbench.RandomHex(32), // opaque, Dex-sized
		Expiry:       now.Add(11 * time.Hour),
	}
}

// storeCookies saves s with store and returns the Cookie header a browser sends with a
// request to /api/...: every cookie set on "/" or "/api/", most specific path first.
func storeCookies(ctx context.Context, store session.Store, s *session.Session) (string, error) {
	set, err := store.Save(ctx, httptest.NewRequest(http.MethodGet, "/auth/callback", nil), s)
	if err != nil {
		return "", fmt.Errorf("bench: mint session cookies: %w", err)
	}
	var specific, root []string
	for _, c := range set {
		if c.MaxAge < 0 || c.Value == "" {
			continue // a deletion
		}
		switch c.Path {
		case "/api/":
			specific = append(specific, c.Name+"="+c.Value)
		case "/", "":
			root = append(root, c.Name+"="+c.Value)
		}
	}
	// A browser's other cookies for the origin come along too.
	return strings.Join(append(append(specific, root...), "theme=dark", "lang=en"), "; "), nil
}

// newCookieStore is a CookieStore with the key and paths of the tokenhandler under test:
// cookies it seals open there.
func newCookieStore(keys session.KeyPair) (*session.CookieStore, error) {
	return session.NewCookieStore(session.CookieOptions{Keys: []session.KeyPair{keys}, RefreshPaths: refreshPaths})
}
