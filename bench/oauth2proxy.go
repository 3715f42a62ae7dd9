//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// oauth2-proxy v7.8.1 is pinned by the tool module bench/oauth2-proxy (go.mod and go.sum
// committed). `go install` is refused by the module proxy here, so the harness builds it
// with `go build` in that module and caches the binary outside the clone, keyed by a hash
// of go.mod and go.sum, as scripts/idp-bin.sh does for the providers.
const o2pPackage = "github.com/oauth2-proxy/oauth2-proxy/v7"

// buildOAuth2Proxy returns the cached oauth2-proxy binary, building it first if needed
// (a cold build takes a few minutes).
func buildOAuth2Proxy(ctx context.Context, root string, logf func(string, ...any)) (string, error) {
	mod := filepath.Join(root, "bench", "oauth2-proxy")
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		return "", err
	}
	gosum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(gomod, gosum...))
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache")
	}
	dir := filepath.Join(cache, "tokenhandler", "bench", fmt.Sprintf("oauth2-proxy-%x", sum[:8]))
	bin := filepath.Join(dir, "oauth2-proxy")
	if fi, err := os.Stat(bin); err == nil && fi.Mode()&0o111 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	logf("building oauth2-proxy v7.8.1 into %s (a cold build takes a few minutes)", dir)
	tmp := bin + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, o2pPackage)
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("bench: build oauth2-proxy: %w\n%s", err, tail(out, 2048))
	}
	return bin, os.Rename(tmp, bin)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// o2pInstance is one running oauth2-proxy.
type o2pInstance struct {
	URL  string
	proc *testbench.Process
}

// o2pRedirect is oauth2-proxy's callback path.
const o2pCallback = "/oauth2/callback"

// startOAuth2Proxy starts oauth2-proxy on port as an OIDC client of d in front of
// upstream: cookie sessions (its default), PKCE (Dex enforces it), the access token passed
// on in X-Forwarded-Access-Token, and otherwise its defaults (request logging on).
// cookie-secure is off because the harness's client speaks plain http on loopback.
func startOAuth2Proxy(ctx context.Context, ps *procs, bin, dir string, port int, d *dex, upstream string) (*o2pInstance, error) {
	secret := make([]byte, 32)
	copy(secret, testbench.RandomHex(16))
	pub := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{
		"--http-address=" + fmt.Sprintf("127.0.0.1:%d", port),
		"--provider=oidc",
		"--oidc-issuer-url=" + d.Issuer,
		"--client-id=" + clientID,
		"--client-secret=" + d.ClientSecret,
		"--redirect-url=" + pub + o2pCallback,
		"--upstream=" + upstream + "/",
		"--email-domain=*",
		"--cookie-secret=" + base64.RawURLEncoding.EncodeToString(secret),
		"--cookie-secure=false",
		"--skip-provider-button=true",
		"--code-challenge-method=S256",
		"--scope=openid email profile offline_access",
		// Its default, "force", sends prompt=consent, which makes Dex ask for approval
		// despite skipApprovalScreen; the session is the same either way.
		"--approval-prompt=auto",
		"--pass-access-token=true",
		"--insecure-oidc-allow-unverified-email=true",
	}
	p, err := ps.start("oauth2-proxy", bin, args, nil, filepath.Join(dir, fmt.Sprintf("oauth2-proxy-%d.log", port)))
	if err != nil {
		return nil, err
	}
	if _, err := waitHTTP(ctx, p, pub+"/ping", http.StatusOK, 30*time.Second); err != nil {
		p.Stop(stopGrace)
		return nil, err
	}
	return &o2pInstance{URL: pub, proc: p}, nil
}

// session signs in through Dex and returns the Cookie header of oauth2-proxy's session.
func (o *o2pInstance) session(ctx context.Context) (string, error) {
	c := newBrowser()
	status, err := signIn(ctx, c, o.URL+"/oauth2/start?rd=%2Fapi%2Fitems", 0)
	if err != nil {
		return "", fmt.Errorf("bench: oauth2-proxy: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("bench: oauth2-proxy: sign-in ended with status %d\n%s", status, o.proc.Tail(30))
	}
	h := cookieHeader(c, o.URL+"/api/items")
	if h == "" {
		return "", fmt.Errorf("bench: oauth2-proxy: no session cookie after sign-in")
	}
	return h, nil
}
