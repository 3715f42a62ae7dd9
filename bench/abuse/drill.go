//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
	"github.com/tokenhandler/tokenhandler/e2e/idptest"
	"github.com/tokenhandler/tokenhandler/session"
)

const (
	legitInterval    = 10 * time.Millisecond  // the session's pace: about 100 requests/s
	sampleInterval   = 250 * time.Millisecond // RSS and goroutines
	goroutineSlack   = 10                     // "back to the baseline": within this many
	releaseGrace     = time.Second            // scheduling on a loaded machine
	releaseOvershoot = 10 * time.Second       // how long past the target the drill waits
	apiPath          = "/api/ping"            // the session's GET
	uploadPath       = "/api/upload"          // the slow bodies' POST
	unknownVarRe     = `unknown environment variable (TH_[A-Z_]+)`
	serverVarsPrefix = "TH_SERVER_|TH_PROXY_REPLAY" // the settings the drill passes
)

// drill sets everything up, runs the four phases and returns what it measured.
func drill(t *harness.TB, o *options) *result {
	res := &result{load: [2]string{harness.LoadAverage(), ""}}
	bin := harness.Prepare(t, o.provider, o.bin)
	pub, adm := harness.Listener(t), harness.Listener(t)
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	base := scheme + "://" + pub.Addr().String()
	idp := idptest.Start(t, o.provider, idptest.Options{RedirectURL: base + "/auth/callback"})
	up := harness.Upstream(t)
	key, err := session.GenerateKeyPair()
	if err != nil {
		t.Fatalf("%v", err)
	}
	env := map[string]string{
		"TH_PUBLIC_URL":                 base,
		"TH_OIDC_ISSUER":                idp.Issuer,
		"TH_OIDC_CLIENT_ID":             idp.ClientID,
		"TH_OIDC_CLIENT_SECRET":         idp.ClientSecret,
		"TH_COOKIES_KEYS":               key.Reveal(),
		"TH_ROUTES":                     `[{"path":"/api/","upstream":"` + up.URL + `"}]`,
		"TH_LOG_LEVEL":                  "warn",
		"TH_SERVER_BODY_TIMEOUT":        o.bodyTimeout.String(),
		"TH_SERVER_READ_HEADER_TIMEOUT": o.readHeaderTimeout.String(),
	}
	if o.idleTimeout > 0 {
		env["TH_SERVER_IDLE_TIMEOUT"] = o.idleTimeout.String()
	}
	if o.replayMemory != "" {
		env["TH_PROXY_REPLAY_MEMORY"] = o.replayMemory
	}
	for k, v := range o.thEnv {
		env[k] = v
	}
	var roots *x509.CertPool
	if o.tls {
		var certFile, keyFile string
		certFile, keyFile, roots = selfSigned(t)
		env["TH_TLS_CERT_FILE"], env["TH_TLS_KEY_FILE"] = certFile, keyFile
	}
	th := harness.StartTokenhandler(t, "tokenhandler", bin, pub, adm, env)

	browser := newBrowser(t, roots)
	resp := idp.SignIn(t, browser, base+"/auth/login?return_to=/")
	resp.Body.Close()
	if got := resp.Request.URL.String(); got != base+"/" {
		t.Fatalf("after sign-in the browser is at %s, want %s/", got, base)
	}
	if code, err := get(t.Context(), browser, base+apiPath); err != nil || code != http.StatusOK {
		t.Fatalf("GET %s after sign-in = %d, %v; want 200", apiPath, code, err)
	}
	res.proto = protoOf(t, browser, base+apiPath)
	cookie := cookieHeader(browser, base+apiPath)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	legit := &legitLoop{}
	go legit.run(ctx, browser, base+apiPath)
	mon := &monitor{pid: th.Proc.Pid(), admin: th.Admin}
	go mon.run(ctx)

	// Warm-up, then the phases.
	t.Wait(time.Second)
	start := time.Now()
	t.Wait(o.phase)
	res.add("baseline", start, legit, mon)
	base0 := res.phases[0]

	a := newAttack(o, pub.Addr().String(), base, roots, cookie)
	start = time.Now()
	a.start(t.Context())
	res.rampTime = a.waitOpened(t.Context(), o.attack)
	t.Wait(time.Until(start.Add(o.attack)))
	res.add("attack", start, legit, mon)

	// Release: every attacker goes silent; wait until tokenhandler let go of everything.
	start = time.Now()
	a.silence()
	bound := max(o.bodyTimeout, o.readHeaderTimeout) + releaseGrace
	deadline := start.Add(bound + min(bound, releaseOvershoot))
	for {
		g := mon.last().goroutines
		if a.open.Load() == 0 && g <= base0.goroutines+goroutineSlack && mon.last().at.After(a.lastClose()) {
			res.released, res.releaseTime = true, time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			res.openAtCap, res.goroutinesAtCap = a.open.Load(), g
			res.releaseTime = time.Since(start)
			break
		}
		t.Wait(sampleInterval)
	}
	res.releaseBound = bound
	res.add("release", start, legit, mon)
	a.stop()
	res.attack = a.summary()

	start = time.Now()
	t.Wait(o.phase)
	res.add("after", start, legit, mon)
	cancel()
	res.peak = mon.peak(res.phases[1].start, res.phases[2].end)
	res.load[1] = harness.LoadAverage()
	// Read last: tokenhandler buffers its log output.
	res.unknownVars = unknownVars(th.Proc.Tail(1 << 20))
	return res
}

// newBrowser is the signed-in session's client: idptest's browser-like client over
// plain HTTP; over TLS a client that trusts the drill's certificate and speaks HTTP/2,
// as a browser would.
func newBrowser(t *harness.TB, roots *x509.CertPool) *http.Client {
	if roots == nil {
		return idptest.NewClient(t)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar: %v", err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
	}}
}

// get sends GET u with the CSRF header every proxied request needs and reads the answer.
func get(ctx context.Context, c *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func protoOf(t *harness.TB, c *http.Client, u string) string {
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.Proto
}

// cookieHeader is the Cookie header the browser sends to u.
func cookieHeader(c *http.Client, u string) string {
	pu, _ := url.Parse(u)
	var parts []string
	for _, ck := range c.Jar.Cookies(pu) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

// unknownVars lists the TH_SERVER_* and TH_PROXY_REPLAY_* settings that tokenhandler
// said it does not know: it then runs with its built-in limits.
func unknownVars(log string) []string {
	var out []string
	for _, m := range regexp.MustCompile(unknownVarRe).FindAllStringSubmatch(log, -1) {
		if regexp.MustCompile(serverVarsPrefix).MatchString(m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// legitLoop is the signed-in session: one proxied GET after another, paced.
type legitLoop struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at time.Time
	d  time.Duration
	ok bool
}

func (l *legitLoop) run(ctx context.Context, c *http.Client, u string) {
	tick := time.NewTicker(legitInterval)
	defer tick.Stop()
	for {
		began := time.Now()
		code, err := get(ctx, c, u)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.samples = append(l.samples, sample{at: began, d: time.Since(began), ok: err == nil && code == http.StatusOK})
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// between returns the latencies of the requests that began in [from, to), and how many
// of those failed.
func (l *legitLoop) between(from, to time.Time) (d []time.Duration, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		d = append(d, s.d)
		if !s.ok {
			failed++
		}
	}
	return d, failed
}

// monitor samples tokenhandler's RSS and goroutines.
type monitor struct {
	pid   int
	admin string

	mu      sync.Mutex
	samples []usage
	errs    int
}

type usage struct {
	at         time.Time
	rss        int64
	heap       int64 // Go heap in use: large buffers count here before their pages are touched
	goroutines int
}

func (m *monitor) run(ctx context.Context) {
	tick := time.NewTicker(sampleInterval)
	defer tick.Stop()
	for {
		rss, err1 := harness.RSS(m.pid)
		mm, err2 := harness.Metrics(ctx, m.admin)
		m.mu.Lock()
		if err1 == nil && err2 == nil {
			m.samples = append(m.samples, usage{at: time.Now(), rss: rss,
				goroutines: int(mm["go_goroutines"]), heap: int64(mm["go_memstats_heap_inuse_bytes"])})
		} else if ctx.Err() == nil {
			m.errs++
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (m *monitor) last() usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) == 0 {
		return usage{}
	}
	return m.samples[len(m.samples)-1]
}

// peak returns the highest RSS, heap and goroutines sampled in [from, to].
func (m *monitor) peak(from, to time.Time) usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p usage
	for _, s := range m.samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		p.rss, p.heap, p.goroutines = max(p.rss, s.rss), max(p.heap, s.heap), max(p.goroutines, s.goroutines)
	}
	return p
}

// phaseStats is one phase's numbers: the session's latencies over the phase, and
// tokenhandler's RSS and goroutines at its end.
type phaseStats struct {
	name       string
	start, end time.Time
	requests   int
	failed     int
	p50, p99   time.Duration
	rss, heap  int64
	goroutines int
}

func (r *result) add(name string, start time.Time, l *legitLoop, m *monitor) {
	end := time.Now()
	d, failed := l.between(start, end)
	u := m.last()
	r.phases = append(r.phases, phaseStats{name: name, start: start, end: end, requests: len(d), failed: failed,
		p50: harness.Percentile(d, 50), p99: harness.Percentile(d, 99), rss: u.rss, heap: u.heap, goroutines: u.goroutines})
}

func (r *result) phase(name string) phaseStats {
	for _, p := range r.phases {
		if p.name == name {
			return p
		}
	}
	return phaseStats{}
}

// String is for log lines.
func (p phaseStats) String() string {
	return fmt.Sprintf("%s: %d requests (%d failed), p50 %v, p99 %v, RSS %s, %d goroutines",
		p.name, p.requests, p.failed, p.p50, p.p99, harness.MiB(p.rss), p.goroutines)
}
