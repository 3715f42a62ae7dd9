// Command stack runs tokenhandler's whole demo on loopback, without Docker: the Dex
// OpenID provider, the example API (in this process) and tokenhandler serving the example
// SPA. It waits until tokenhandler is ready, prints the URL and the demo credentials, and
// stops everything on Ctrl-C or SIGTERM.
//
//	go run ./examples/stack -dex "$(scripts/idp-bin.sh dex-demo)"
//
// ./run.sh (the README's run command) builds Dex and tokenhandler and runs this. With
// -json it prints one JSON line (URLs, credentials, log directory) for tests; with
// -ports=auto it picks free ports instead of 8080 (tokenhandler) and 5556 (Dex).
//
// With -fapi (./run.sh -fapi) it runs panva oidc-provider (Node.js) on 3000 instead of
// Dex, for FAPI 2.0 with DPoP: see fapi.go.
//
// tokenhandler is configured only through TH_* variables, exactly as a user would:
// cookie sessions, Secure cookies on http://localhost (browsers treat loopback as
// secure), the SPA from examples/spa, /api/ proxied to the example API with the prefix
// stripped, /orders/ to the same API with a token made for that route (routes[].token),
// and its admin listener (/readyz, /metrics) on a free loopback port.
// Inherited TH_* variables are not passed on, so the demo is the same on every machine.
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/tokenhandler/tokenhandler/examples/api"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

//go:embed dex.yaml.tmpl
var dexTemplate string

// The demo user and client, the same as examples/dex/dex.yaml and the e2e harness.
const (
	clientID     = "tokenhandler"
	username     = "alice@example.com"
	password     = testbench.DemoPassword
	passwordHash = testbench.DemoPasswordHash
	modulePath   = "github.com/tokenhandler/tokenhandler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

type options struct {
	root      string
	dexBin    string
	thBin     string
	ports     string
	port      int
	dexPort   int
	tokenTTL  time.Duration
	jsonOut   bool
	verbose   bool
	keepLogs  bool
	readyWait time.Duration
	// -fapi: oidc-provider instead of Dex (fapi.go).
	fapi   bool
	opDir  string // the directory holding node_modules/oidc-provider
	opPort int
}

// Info is what -json prints, one line, once everything is ready.
type Info struct {
	URL        string `json:"url"`         // open this in the browser
	Issuer     string `json:"issuer"`      // Dex, or oidc-provider with -fapi
	APIURL     string `json:"api_url"`     // the example API, directly (no tokenhandler)
	AdminURL   string `json:"admin_url"`   // tokenhandler's admin listener
	MetricsURL string `json:"metrics_url"` // AdminURL + /metrics
	Username   string `json:"username"`
	Password   string `json:"password"`
	TokenTTL   string `json:"token_ttl"`
	LogDir     string `json:"log_dir"` // dex.log (or oidc-provider.log), tokenhandler.log, api.log
	// FAPI is true with -fapi: PAR, private_key_jwt, DPoP-bound JWT access tokens for
	// Audience, which the example API accepts only with a valid DPoP proof.
	FAPI     bool   `json:"fapi,omitempty"`
	Audience string `json:"audience,omitempty"`
	// Orders is true when /orders/ is routed to the example API with a token made for
	// that route (a derived token, DESIGN "Tokens for upstreams").
	Orders bool `json:"orders,omitempty"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.root, "root", "", "the repository root (default: found from the working directory)")
	fs.StringVar(&o.dexBin, "dex", firstNonEmpty(getenv("TOKENHANDLER_DEX"), getenv("TOKENHANDLER_TEST_DEX")), "Dex binary (env TOKENHANDLER_DEX; default: built by scripts/idp-bin.sh dex-demo)")
	fs.StringVar(&o.thBin, "tokenhandler", getenv("TOKENHANDLER_BIN"), "tokenhandler binary (env TOKENHANDLER_BIN; default: go build ./cmd/tokenhandler)")
	fs.StringVar(&o.ports, "ports", "", `"auto" picks free loopback ports for tokenhandler and Dex instead of -port and -dex-port`)
	fs.IntVar(&o.port, "port", 8080, "tokenhandler's port (the URL to open)")
	fs.IntVar(&o.dexPort, "dex-port", 5556, "Dex's port")
	fs.DurationVar(&o.tokenTTL, "token-ttl", time.Minute, "access-token (and ID-token) lifetime at Dex")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON line with the URLs and credentials when ready (human text goes to stderr)")
	fs.BoolVar(&o.verbose, "v", false, "copy every component's log to stderr")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the log directory after a clean stop")
	fs.DurationVar(&o.readyWait, "ready-timeout", 2*time.Minute, "how long to wait for Dex and tokenhandler to become ready")
	fs.BoolVar(&o.fapi, "fapi", false, "FAPI 2.0 demo: panva oidc-provider (needs Node.js) instead of Dex, with PAR, private_key_jwt, DPoP-bound JWT access tokens, oidc.profile fapi2, and the example API accepting only DPoP")
	fs.StringVar(&o.opDir, "oidc-provider", firstNonEmpty(getenv("TOKENHANDLER_OIDC_PROVIDER"), getenv("TOKENHANDLER_TEST_OIDC_PROVIDER")), "with -fapi: the directory holding node_modules/oidc-provider (env TOKENHANDLER_OIDC_PROVIDER; default: installed by scripts/idp-bin.sh oidc-provider)")
	fs.IntVar(&o.opPort, "op-port", 3000, "with -fapi: oidc-provider's port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.ports {
	case "", "default":
	case "auto":
		p, err := testbench.FreePorts(2)
		if err != nil {
			return err
		}
		o.port, o.dexPort, o.opPort = p[0], p[1], p[1] // one provider runs
	default:
		return fmt.Errorf(`-ports=%q: want "auto" (or set -port and -dex-port)`, o.ports)
	}
	if o.tokenTTL < time.Second {
		return fmt.Errorf("-token-ttl=%s: want at least 1s", o.tokenTTL)
	}
	human := stdout
	if o.jsonOut {
		human = stderr
	}
	if o.root == "" {
		r, err := findRoot()
		if err != nil {
			return err
		}
		o.root = r
	}

	dir, err := os.MkdirTemp("", "tokenhandler-stack-")
	if err != nil {
		return err
	}
	s := &stack{o: o, dir: dir, human: human, stderr: stderr}
	err = s.run(ctx, stdout)
	if err != nil || o.keepLogs {
		fmt.Fprintf(stderr, "stack: logs kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	return err
}

type stack struct {
	o      options
	dir    string
	human  io.Writer
	stderr io.Writer
}

func (s *stack) run(ctx context.Context, stdout io.Writer) error {
	o := s.o
	ports, err := testbench.FreePorts(2)
	if err != nil {
		return err
	}
	apiPort, adminPort := ports[0], ports[1]
	publicURL := fmt.Sprintf("http://localhost:%d", o.port)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", apiPort)

	if o.thBin == "" {
		o.thBin = filepath.Join(s.dir, "tokenhandler")
		fmt.Fprintln(s.human, "stack: building tokenhandler")
		if _, err := s.output(ctx, o.root, "go", "build", "-o", o.thBin, "./cmd/tokenhandler"); err != nil {
			return fmt.Errorf("building tokenhandler: %w", err)
		}
		s.o.thBin = o.thBin
	}
	key, err := s.output(ctx, o.root, o.thBin, "keygen")
	if err != nil {
		return fmt.Errorf("tokenhandler keygen: %w", err)
	}

	var p *provider
	if o.fapi {
		p, err = s.startOIDCProvider(ctx, publicURL, apiURL)
	} else {
		p, err = s.startDex(ctx, publicURL)
	}
	if err != nil {
		return err
	}
	defer p.proc.Stop(5 * time.Second)

	// The example API, in this process.
	apiLog, err := os.Create(filepath.Join(s.dir, "api.log"))
	if err != nil {
		return err
	}
	defer apiLog.Close()
	var apiOut io.Writer = apiLog
	if o.verbose {
		apiOut = io.MultiWriter(apiLog, prefixWriter(s.stderr, "api: "))
	}
	apiOpts := p.api
	apiOpts.Logger = slog.New(slog.NewJSONHandler(apiOut, nil))
	apiHandler, err := api.New(apiOpts)
	if err != nil {
		return err
	}
	apiLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", apiPort))
	if err != nil {
		return fmt.Errorf("example api: %w", err)
	}
	apiSrv := &http.Server{Handler: apiHandler, ReadHeaderTimeout: 10 * time.Second}
	go apiSrv.Serve(apiLn)
	defer apiSrv.Close()

	// tokenhandler, configured like a user would: TH_* variables only.
	routeList := []map[string]any{{"path": "/api/", "upstream": apiURL, "strip_prefix": true}}
	if p.ordersToken != nil {
		routeList = append(routeList, map[string]any{"path": "/orders/", "upstream": apiURL, "strip_prefix": true, "token": p.ordersToken})
	}
	routes, _ := json.Marshal(routeList)
	thEnv := append(childEnv(),
		"TH_LISTEN="+fmt.Sprintf("127.0.0.1:%d", o.port),
		"TH_ADMIN_LISTEN="+fmt.Sprintf("127.0.0.1:%d", adminPort),
		"TH_PUBLIC_URL="+publicURL,
		"TH_OIDC_ISSUER="+p.issuer,
		"TH_OIDC_CLIENT_ID="+clientID,
		"TH_OIDC_POST_LOGOUT_REDIRECT_URL="+publicURL+"/",
		"TH_COOKIES_KEYS="+key,
		"TH_COOKIES_SECURE=true",
		"TH_SESSION_STORE=cookie",
		"TH_STATIC_DIR="+filepath.Join(o.root, "examples", "spa"),
		"TH_ROUTES="+string(routes),
		"TH_LOG_FORMAT=json",
	)
	thEnv = append(thEnv, p.thEnv...)
	th, err := s.start("tokenhandler", o.thBin, []string{"serve"}, thEnv)
	if err != nil {
		return err
	}
	defer th.Stop(10 * time.Second)
	if err := s.waitReady(ctx, th, adminURL+"/readyz"); err != nil {
		return err
	}

	info := Info{
		URL: publicURL, Issuer: p.issuer, APIURL: apiURL,
		AdminURL: adminURL, MetricsURL: adminURL + "/metrics",
		Username: p.username, Password: p.password, TokenTTL: o.tokenTTL.String(), LogDir: s.dir,
		FAPI: o.fapi, Audience: p.api.Audience, Orders: p.ordersToken != nil,
	}
	fmt.Fprintf(s.human, `
tokenhandler example stack is up.

  Open       %s
  Sign in    %s / %s
  Provider   %s (%s; access tokens live %s)
  Metrics    %s
  Logs       %s
%s
Ctrl-C stops everything.
`, info.URL, info.Username, info.Password, info.Issuer, p.name, info.TokenTTL, info.MetricsURL, info.LogDir, p.note)
	if o.jsonOut {
		line, _ := json.Marshal(info)
		fmt.Fprintln(stdout, string(line))
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(s.human, "stack: stopping")
		return nil
	case <-p.proc.Done():
		return exitedError(p.proc)
	case <-th.Done():
		return exitedError(th)
	}
}

// provider is a started OpenID provider and what the example API and tokenhandler need
// to use it.
type provider struct {
	name               string // for the banner
	proc               *testbench.Process
	issuer             string
	username, password string
	api                api.Options // without Logger
	thEnv              []string    // TH_* variables of the provider's client
	note               string      // extra banner lines
	// ordersToken is the token policy (routes[].token) of the demo's second route,
	// /orders/, to the same API: a token made for that route. nil: no such route.
	ordersToken map[string]any
}

// startDex starts the demo's Dex with a fresh client secret.
func (s *stack) startDex(ctx context.Context, publicURL string) (*provider, error) {
	o := s.o
	issuer := fmt.Sprintf("http://localhost:%d/dex", o.dexPort)
	dexBack := fmt.Sprintf("http://127.0.0.1:%d", o.dexPort)
	if o.dexBin == "" {
		fmt.Fprintln(s.human, "stack: finding the demo's Dex via scripts/idp-bin.sh dex-demo (the first build takes a minute or two; it is cached afterwards)")
		bin, err := s.output(ctx, o.root, filepath.Join(o.root, "scripts", "idp-bin.sh"), "dex-demo")
		if err != nil {
			return nil, fmt.Errorf("building Dex: %w", err)
		}
		o.dexBin = bin
	}
	secret := testbench.RandomHex(24) // a fresh client secret per start: Dex and tokenhandler both get it here
	cfgPath := filepath.Join(s.dir, "dex.yaml")
	if err := writeDexConfig(cfgPath, dexConfig{
		Issuer:       issuer,
		Listen:       fmt.Sprintf("127.0.0.1:%d", o.dexPort),
		TokenTTL:     o.tokenTTL.String(),
		Username:     username,
		PasswordHash: passwordHash,
		ClientID:     clientID,
		ClientSecret: secret,
		PublicURL:    publicURL,
	}); err != nil {
		return nil, err
	}
	dex, err := s.start("dex", o.dexBin, []string{"serve", cfgPath}, append(childEnv(), "DEX_SESSIONS_ENABLED=true"))
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, dex, fmt.Sprintf("http://127.0.0.1:%d/dex/.well-known/openid-configuration", o.dexPort)); err != nil {
		dex.Stop(5 * time.Second)
		return nil, err
	}
	return &provider{
		name: "Dex", proc: dex, issuer: issuer, username: username, password: password,
		api: api.Options{
			Issuer: issuer,
			// Like docker-compose.yml: discovery and keys through the provider's internal
			// address, iss still checked against the public issuer.
			DiscoveryURL: dexBack + "/dex",
			Audience:     clientID, // Dex's access tokens carry the client id as aud
		},
		thEnv: []string{
			// As in docker-compose.yml: the browser uses the issuer's host, tokenhandler
			// fetches discovery, tokens and keys through the back-channel address.
			"TH_OIDC_BACKCHANNEL_BASE_URL=" + dexBack,
			"TH_OIDC_CLIENT_SECRET=" + secret,
		},
		// Entra ID style: the same refresh token, a token with fewer scopes. Dex signs
		// it like every access token (the example API verifies it as it does /api/'s),
		// and without the profile and email scopes it carries neither name nor email:
		// the orders API learns who the user is, and nothing more.
		ordersToken: map[string]any{"via": "refresh", "scope": "openid"},
	}, nil
}

// output runs a command to completion and returns its trimmed stdout; its stderr goes to
// ours (build progress).
func (s *stack) output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stderr = s.stderr
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// start starts a child in a process group of its own (so Ctrl-C in the terminal
// reaches only the stack, which then stops each child in order), its output in
// NAME.log and, with -v, on stderr. On Linux the child gets SIGTERM if the stack dies
// without cleaning up (kill -9), so no Dex or tokenhandler is left holding the demo's
// ports.
func (s *stack) start(name, bin string, args, env []string) (*testbench.Process, error) {
	spec := testbench.Spec{
		Name: name, Bin: bin, Args: args, Env: env,
		LogPath:     filepath.Join(s.dir, name+".log"),
		DeathSignal: syscall.SIGTERM,
	}
	if s.o.verbose {
		spec.Output = prefixWriter(s.stderr, name+": ")
	}
	return testbench.Start(spec)
}

// waitReady polls url until it answers 200, the child exits, or time runs out.
func (s *stack) waitReady(ctx context.Context, c *testbench.Process, url string) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.readyWait)
	defer cancel()
	_, err := testbench.WaitHTTP(ctx, c, url, http.StatusOK, 100*time.Millisecond)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, testbench.ErrExited):
		return fmt.Errorf("%s exited before it was ready (%v); its log:\n%s", c.Name(), c.Err(), c.Tail(30))
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s not ready at %s after %s; its log:\n%s", c.Name(), url, s.o.readyWait, c.Tail(30))
	}
	return err
}

// exitedError reports a child that exited while the stack ran.
func exitedError(c *testbench.Process) error {
	return fmt.Errorf("%s exited unexpectedly (%v); its log:\n%s", c.Name(), c.Err(), c.Tail(30))
}

type dexConfig struct {
	Issuer, Listen, TokenTTL, Username, PasswordHash, ClientID, ClientSecret, PublicURL string
}

func writeDexConfig(path string, c dexConfig) error {
	t, err := template.New("dex").Option("missingkey=error").Parse(dexTemplate)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// childEnv is our environment without TH_* (tokenhandler's configuration) and DEX_*
// variables, so nothing inherited reconfigures the demo.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TH_") || strings.HasPrefix(kv, "DEX_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// findRoot walks up from the working directory to tokenhandler's go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+modulePath)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the tokenhandler repository from the working directory; pass -root")
		}
		dir = parent
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// prefixWriter writes each line to w with prefix in front.
func prefixWriter(w io.Writer, prefix string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(w, prefix+sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	return pw
}
