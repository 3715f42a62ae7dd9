//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	Options        *options
	Machine        []string
	Started        time.Time
	Finished       time.Time
	LoadBefore     string
	LoadAfter      string
	Steady         []*scenarioResult
	Storms         []stormResult
	Startup        []startupResult
	GoBench        []goBench
	O2PCookieBytes int
	Notes          []string
}

func (r *report) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "bench: note:", msg)
	r.Notes = append(r.Notes, msg)
}

// summary is one setup's medians over the rounds of one scenario.
type summary struct {
	setup              string
	rps, ratio         float64 // ratio: to the bare proxy of the same round
	p50, p99, p999     float64 // µs
	cpu, addedCPU      float64 // µs per request; added: minus the bare proxy's of the same round
	extraCPU           float64 // µs per request of the helper process (redis-server)
	errors, requests   int64
	rss                int64
	hasRatio, hasAdded bool
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// byRound returns the result of setup in each round.
func (s *scenarioResult) byRound(setup string) map[int]roundResult {
	m := map[int]roundResult{}
	for _, r := range s.Rounds {
		if r.Setup == setup {
			m[r.Round] = r
		}
	}
	return m
}

// ratio is the median over rounds of a's throughput over b's.
func (s *scenarioResult) ratio(a, b string) (float64, bool) {
	return s.ratioOf(a, b, func(x roundResult) float64 { return x.W.rps() })
}

// ratioOf is the median over rounds of f(a's result) over f(b's of the same round).
func (s *scenarioResult) ratioOf(a, b string, f func(roundResult) float64) (float64, bool) {
	ra, rb := s.byRound(a), s.byRound(b)
	var v []float64
	for round, x := range ra {
		if y, ok := rb[round]; ok && f(y) > 0 {
			v = append(v, f(x)/f(y))
		}
	}
	return median(v), len(v) > 0
}

// addedOver is the median over rounds of a's CPU per request minus b's of the same round.
func (s *scenarioResult) addedOver(a, b string) float64 {
	ra, rb := s.byRound(a), s.byRound(b)
	var v []float64
	for round, x := range ra {
		if y, ok := rb[round]; ok {
			v = append(v, x.CPUPerReq-y.CPUPerReq)
		}
	}
	return median(v)
}

func (s *scenarioResult) summarize(setup string) summary {
	rounds := s.byRound(setup)
	bare := s.byRound(setupBare)
	out := summary{setup: setup, rss: s.RSS[setup]}
	var rps, p50, p99, p999, cpu, added, extra []float64
	for round, r := range rounds {
		rps = append(rps, r.W.rps())
		p50 = append(p50, r.W.P50)
		p99 = append(p99, r.W.P99)
		p999 = append(p999, r.W.P999)
		cpu = append(cpu, r.CPUPerReq)
		extra = append(extra, r.ExtraCPUPerReq)
		out.errors += r.W.errors()
		out.requests += r.W.Requests
		if b, ok := bare[round]; ok && setup != setupUpstream {
			added = append(added, r.CPUPerReq-b.CPUPerReq)
		}
	}
	out.rps, out.p50, out.p99, out.p999, out.cpu = median(rps), median(p50), median(p99), median(p999), median(cpu)
	out.extraCPU = median(extra)
	out.ratio, out.hasRatio = s.ratio(setup, setupBare)
	if len(added) > 0 && setup != setupBare {
		out.addedCPU, out.hasAdded = median(added), true
	}
	return out
}

func (s *scenarioResult) find(name string) *summary {
	if !slices.Contains(s.Setups, name) {
		return nil
	}
	sum := s.summarize(name)
	return &sum
}

func (r *report) scenario(name string) *scenarioResult {
	for _, s := range r.Steady {
		if s.Scenario.Name == name {
			return s
		}
	}
	return nil
}

func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }

func mib(b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// markdown renders the results section of BENCHMARKS.md.
func (r *report) markdown() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "Run of %s, %s. wrk: %d connections, %d threads, %s per run after a %s warm-up, %d interleaved rounds; medians over the rounds.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second), o.conns, o.threads, o.duration, o.warmup, o.rounds)
	b.WriteString("Machine: " + strings.Join(r.Machine, "; ") + ".\n")
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) before the run: %s; after: %s.\n\n", r.LoadBefore, r.LoadAfter)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}

	b.WriteString("### Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.name, t.value, t.met)
	}
	b.WriteString("\n")

	for _, s := range r.Steady {
		fmt.Fprintf(&b, "### %s\n\n", s.Scenario.Title)
		b.WriteString("| setup | req/s | × bare | p50 | p99 | p99.9 | CPU µs/req | added CPU µs/req | peak RSS | errors | carried |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, setup := range s.Setups {
			m := s.summarize(setup)
			ratio, added := "–", "–"
			if m.hasRatio {
				ratio = fmt.Sprintf("%.2f", m.ratio)
			}
			if m.hasAdded {
				added = fmt.Sprintf("%+.1f", m.addedCPU)
			}
			cpu := fmt.Sprintf("%.1f", m.cpu)
			if m.extraCPU > 0 {
				cpu += fmt.Sprintf(" (+ %.1f redis-server)", m.extraCPU)
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %d / %d | %s |\n",
				setup, m.rps, ratio, ms(m.p50), ms(m.p99), ms(m.p999), cpu, added, mib(m.rss), m.errors, m.requests, s.Notes[setup])
		}
		for setup, n := range s.Notes {
			if strings.HasPrefix(n, "left out") {
				fmt.Fprintf(&b, "\n%s %s\n", setup, n)
			}
		}
		b.WriteString("\n")
	}

	if len(r.Storms) > 0 {
		b.WriteString("### Refresh storm\n\n")
		fmt.Fprintf(&b, "Sessions signed in through Dex (real login form, access tokens valid %s); once every access token has expired, all requests are sent at once, spread evenly over the sessions. Token-endpoint calls are counted at a reverse proxy in front of Dex.\n\n", o.stormTTL)
		fmt.Fprintf(&b, "Before the storm, %d more sessions send one request each, one after the other: \"refresh alone\" is the median time of the refresh call at the provider (its front proxy) when it is the only one, \"request alone\" the median time of such a request through tokenhandler, refresh included; the storm's p99 is given as a multiple of the former. After the storm the same burst is sent again with the refreshed cookies: the same load without a refresh (its token calls in brackets, 0 expected).\n\n", stormAlone)
		b.WriteString("| setup | sessions | requests | refresh calls | all token calls | failures | p50 | p99 | max | wall | refresh alone (provider) | request alone | p99 ÷ refresh alone | same burst, no refresh: p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Storms {
			if s.Err != "" {
				fmt.Fprintf(&b, "| %s | %d | %d | failed: %s |||||||||||\n", s.Setup, s.Sessions, s.Requests, firstLine(s.Err))
				continue
			}
			mult := "–"
			if s.ProviderRefresh > 0 {
				mult = fmt.Sprintf("%.1f×", float64(s.P99)/float64(s.ProviderRefresh))
			}
			again := "–"
			if s.BurstP99 > 0 {
				again = fmt.Sprintf("%s (%d)", s.BurstP99.Round(time.Millisecond), s.BurstCalls)
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Setup, s.Sessions, s.Requests,
				s.RefreshCalls, s.TokenCalls, s.Failures, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond),
				s.Max.Round(time.Millisecond), s.Wall.Round(time.Millisecond), s.ProviderRefresh.Round(100*time.Microsecond),
				s.SingleRefresh.Round(100*time.Microsecond), mult, again)
		}
		b.WriteString("\n")
	}

	if len(r.Startup) > 0 {
		b.WriteString("### Start-up to ready\n\n| case | runs | median | max |\n|---|---|---|---|\n")
		for _, s := range r.Startup {
			name := "provider already up; from process start to /readyz 200"
			if s.Case == "late" {
				name = fmt.Sprintf("provider answered 503 for the first %s; from its first answer to /readyz 200", s.Down)
			}
			if s.Err != "" {
				fmt.Fprintf(&b, "| %s | failed: %s | | |\n", name, firstLine(s.Err))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", name, len(s.Times), s.median().Round(time.Millisecond), s.max().Round(time.Millisecond))
		}
		b.WriteString("\n")
	}

	if len(r.GoBench) > 0 {
		fmt.Fprintf(&b, "### Go benchmarks (`go test -run '^$' -bench . -benchtime %s ./bench` and `-bench 'BenchmarkOpenCache|BenchmarkRedisStoreLoad$' ./session`)\n\n", o.goBench)
		b.WriteString("cpu-ns/op is the process's CPU time per operation (GC included), which a busy neighbour does not inflate as it does wall time.\n\n")
		b.WriteString("| benchmark | ns/op | cpu-ns/op | B/op | allocs/op |\n|---|---|---|---|---|\n")
		for _, g := range r.GoBench {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", g.Name, g.metric("ns/op"), g.metric("cpu-ns/op"), g.metric("B/op"), g.metric("allocs/op"))
		}
		b.WriteString("\n")
	}

	b.WriteString("<details><summary>Every round</summary>\n\n| scenario | round | setup | req/s | p50 | p99 | p99.9 | CPU µs/req | requests | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Steady {
		for _, x := range s.Rounds {
			fmt.Fprintf(&b, "| %s | %d | %s | %.0f | %s | %s | %s | %.1f | %d | %d |\n", s.Scenario.Name, x.Round, x.Setup,
				x.W.rps(), ms(x.W.P50), ms(x.W.P99), ms(x.W.P999), x.CPUPerReq, x.W.Requests, x.W.errors())
		}
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

type targetRow struct{ name, value, met string }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// targets evaluates the targets (issues 6 and 13) against this run.
func (r *report) targets() []targetRow {
	var rows []targetRow
	na := func(name string) { rows = append(rows, targetRow{name, "not measured in this run", "–"}) }
	g := r.scenario("get-1.2k")
	if g != nil && g.find(setupCookie) != nil && g.find(setupBare) != nil {
		c, b := g.summarize(setupCookie), g.summarize(setupBare)
		p99, _ := g.ratioOf(setupCookie, setupBare, func(x roundResult) float64 { return x.W.P99 })
		rows = append(rows,
			targetRow{"cookie mode ≥ 1.0× bare proxy throughput at equal GC settings (GET, 1.2 KB JWT)", fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", c.ratio, c.rps, b.rps), yes(c.ratio >= 1.0)},
			targetRow{"cookie mode added CPU ≤ 3 µs/request at equal GC settings (GET, 1.2 KB JWT)", fmt.Sprintf("%+.1f µs (%.1f vs %.1f µs/req)", c.addedCPU, c.cpu, b.cpu), yes(c.addedCPU <= 3)},
			targetRow{"cookie mode p99 ≤ 1.1× the bare proxy's at equal GC settings (GET, 1.2 KB JWT)", fmt.Sprintf("%.2f× (%s vs %s)", p99, ms(c.p99), ms(b.p99)), yes(p99 <= 1.1)})
		if g.find(setupBareDefault) != nil {
			x, _ := g.ratio(setupCookie, setupBareDefault)
			d := g.summarize(setupBareDefault)
			rows = append(rows, targetRow{"(the old comparison, not a target: cookie mode against the bare proxy at Go's default GOGC=100)",
				fmt.Sprintf("%.2f× throughput, %+.1f µs CPU/request (%.1f vs %.1f)", x, g.addedOver(setupCookie, setupBareDefault), c.cpu, d.cpu), "–"})
		}
	} else {
		na("cookie mode ≥ 1.0× bare proxy, added CPU ≤ 3 µs/request, p99 ≤ 1.1×")
	}
	if g != nil && g.find(setupCookie) != nil && g.find(setupO2P) != nil {
		x, _ := g.ratio(setupCookie, setupO2P)
		rows = append(rows, targetRow{"cookie mode ≥ 3× oauth2-proxy throughput (GET)", fmt.Sprintf("%.2f×", x), yes(x >= 3)})
	} else {
		na("cookie mode ≥ 3× oauth2-proxy throughput")
	}
	open, raw := r.bench("BenchmarkOpenCache/access=1.2KB/cache=on"), r.bench("BenchmarkRawAESGCM/access=1.2KB")
	cold := r.bench("BenchmarkOpenCache/access=1.2KB/cache=off")
	if open != nil && raw != nil {
		o, w := open.value("cpu-ns/op"), raw.value("cpu-ns/op")
		rows = append(rows,
			targetRow{"opening a proxied request's session (access, ID and refresh cookies; 1.2 KB tokens) ≤ 14 µs", fmt.Sprintf("%.1f µs", o/1000), yes(o <= 14000)},
			targetRow{"… ≤ 2.5× raw AES-GCM opens of the same bytes", fmt.Sprintf("%.2f× (raw: %.1f µs)", o/w, w/1000), yes(o <= 2.5*w)})
		if cold != nil {
			c := cold.value("cpu-ns/op")
			rows = append(rows,
				targetRow{"… the same for cookies not seen before (the first request after a login or refresh: no cache)", fmt.Sprintf("%.1f µs, %.2f× raw", c/1000, c/w), yes(c <= 14000 && c <= 2.5*w)})
		}
	} else {
		na("opening a request's session ≤ 14 µs and ≤ 2.5× raw AES-GCM")
	}
	if g != nil && g.find(setupDPoP) != nil && g.find(setupCookie) != nil {
		d, c := g.summarize(setupDPoP), g.summarize(setupCookie)
		rows = append(rows, targetRow{"DPoP (EdDSA) adds ≤ 30 µs CPU/request over cookie mode (GET, 1.2 KB JWT)",
			fmt.Sprintf("%+.1f µs (%.1f vs %.1f µs/req)", d.cpu-c.cpu, d.cpu, c.cpu), yes(d.cpu-c.cpu <= 30)})
	} else {
		na("DPoP (EdDSA) adds ≤ 30 µs CPU/request over cookie mode")
	}
	for _, alg := range []struct {
		name  string
		limit float64
	}{{"EdDSA", 30}, {"ES256", 45}} {
		if p := r.bench("BenchmarkDPoPProof/" + alg.name); p != nil {
			v := p.value("cpu-ns/op") / 1000
			rows = append(rows, targetRow{fmt.Sprintf("one DPoP proof (%s) ≤ %.0f µs CPU", alg.name, alg.limit), fmt.Sprintf("%.1f µs", v), yes(v <= alg.limit)})
		}
	}
	if plain := r.bench("BenchmarkRouteTokens/plain"); plain != nil {
		base := plain.value("cpu-ns/op")
		for _, v := range []struct{ name, what string }{{"derived", "a cached derived token"}, {"minted", "a cached minted JWT"}} {
			if x := r.bench("BenchmarkRouteTokens/" + v.name); x != nil {
				d := (x.value("cpu-ns/op") - base) / 1000
				rows = append(rows, targetRow{fmt.Sprintf("a route with %s adds ≤ 2 µs CPU/request over the plain route (one run each: noise is ±2-5 µs)", v.what),
					fmt.Sprintf("%+.1f µs (%.1f vs %.1f µs)", d, x.value("cpu-ns/op")/1000, base/1000), yes(d <= 2)})
			}
		}
		if x := r.bench("BenchmarkRouteTokens/derived-dpop"); x != nil {
			rows = append(rows, targetRow{"(not a target: a cached DPoP-bound derived token, a fresh EdDSA proof per request, over the plain route)",
				fmt.Sprintf("%+.1f µs (%.1f vs %.1f µs)", (x.value("cpu-ns/op")-base)/1000, x.value("cpu-ns/op")/1000, base/1000), "–"})
		}
	} else {
		na("a cached route token adds ≤ 2 µs CPU/request")
	}
	if g != nil && g.find(setupRedis) != nil && g.find(setupCookie) != nil {
		x, _ := g.ratio(setupRedis, setupCookie)
		rows = append(rows, targetRow{"Redis mode ≥ 0.9× cookie mode (GET, 1.2 KB JWT)", fmt.Sprintf("%.2f×", x), yes(x >= 0.9)})
	} else {
		na("Redis mode ≥ 0.9× cookie mode")
	}
	for _, s := range r.Storms {
		name := fmt.Sprintf("refresh storm (%s): token calls = sessions, no failure", s.Setup)
		if s.Err != "" {
			rows = append(rows, targetRow{name, "failed: " + firstLine(s.Err), "**no**"})
			continue
		}
		rows = append(rows, targetRow{name, fmt.Sprintf("%d refresh calls for %d sessions, %d of %d requests failed, p99 %s",
			s.RefreshCalls, s.Sessions, s.Failures, s.Requests, s.P99.Round(time.Millisecond)), yes(s.RefreshCalls == int64(s.Sessions) && s.Failures == 0)})
		name = fmt.Sprintf("refresh storm (%s): p99 ≤ 2× the provider's own refresh latency", s.Setup)
		if s.ProviderRefresh <= 0 {
			rows = append(rows, targetRow{name, "the provider's refresh latency was not measured", "–"})
			continue
		}
		x := float64(s.P99) / float64(s.ProviderRefresh)
		rows = append(rows, targetRow{name, fmt.Sprintf("%.1f× (p99 %s; one refresh call alone: %s at the provider; the same burst without a refresh: p99 %s)",
			x, s.P99.Round(time.Millisecond), s.ProviderRefresh.Round(100*time.Microsecond), s.BurstP99.Round(time.Millisecond)), yes(x <= 2)})
	}
	if len(r.Startup) > 0 {
		var worst time.Duration
		var failed string
		for _, s := range r.Startup {
			worst = max(worst, s.max())
			if s.Err != "" {
				failed = s.Err
			}
		}
		if failed != "" {
			rows = append(rows, targetRow{"ready < 1 s after the provider answers discovery", "failed: " + firstLine(failed), "**no**"})
		} else {
			rows = append(rows, targetRow{"ready < 1 s after the provider answers discovery", fmt.Sprintf("worst %s (every case below)", worst.Round(time.Millisecond)), yes(worst < time.Second)})
		}
	}
	return rows
}

// goBench is one line of go test -bench output.
type goBench struct {
	Name    string
	Metrics [][2]string // value, unit
}

func (g *goBench) value(unit string) float64 {
	for _, m := range g.Metrics {
		if m[1] == unit {
			v, _ := strconv.ParseFloat(m[0], 64)
			return v
		}
	}
	return math.NaN()
}

func (g *goBench) metric(unit string) string {
	for _, m := range g.Metrics {
		if m[1] == unit {
			return m[0]
		}
	}
	return "–"
}

func (r *report) bench(name string) *goBench {
	for i := range r.GoBench {
		if r.GoBench[i].Name == name {
			return &r.GoBench[i]
		}
	}
	return nil
}

// runGoBench runs this package's benchmarks, the session package's BenchmarkOpenCache
// (which can turn the cache of opened cookies off) and, with a Redis, its
// BenchmarkRedisStoreLoad; and parses their results.
func runGoBench(ctx context.Context, root string, benchtime time.Duration, redisURL string) ([]goBench, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var res []goBench
	sessionBench := "BenchmarkOpenCache"
	if redisURL != "" {
		sessionBench += "|BenchmarkRedisStoreLoad$"
	}
	for _, run := range [][2]string{{".", "./bench"}, {sessionBench, "./session"}} {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", run[0], "-benchtime", benchtime.String(), "-count", "1", run[1])
		cmd.Dir = root
		if redisURL != "" {
			cmd.Env = append(os.Environ(), "TOKENHANDLER_TEST_REDIS_URL="+redisURL)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		got := parseGoBench(out.Bytes())
		res = append(res, got...)
		if err != nil {
			return res, fmt.Errorf("go test -bench %s: %w\n%s", run[1], err, tail(out.Bytes(), 2048))
		}
		if run[1] == "./session" && redisURL != "" && !slices.ContainsFunc(got, func(g goBench) bool { return g.Name == "BenchmarkRedisStoreLoad" }) {
			return res, fmt.Errorf("BenchmarkRedisStoreLoad did not run: %s", strings.ReplaceAll(string(tail(out.Bytes(), 400)), "\n", " "))
		}
	}
	return res, nil
}

func parseGoBench(out []byte) []goBench {
	var res []goBench
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix
			}
		}
		g := goBench{Name: name}
		for i := 2; i+1 < len(f); i += 2 {
			g.Metrics = append(g.Metrics, [2]string{f[i], f[i+1]})
		}
		res = append(res, g)
	}
	return res
}

// machine describes the machine for the report.
func machine() []string {
	var m []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m = append(m, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":")))
				break
			}
		}
	}
	m = append(m, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			m = append(m, fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20)))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m = append(m, "Linux "+strings.TrimSpace(string(b)))
	}
	m = append(m, runtime.Version())
	if out, err := exec.Command("wrk", "-v").CombinedOutput(); len(out) > 0 {
		_ = err // wrk -v exits 1
		line, _, _ := strings.Cut(string(out), "\n")
		if f := strings.Fields(line); len(f) >= 2 {
			m = append(m, "wrk "+f[1])
		}
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				m = append(m, "redis-server "+v)
			}
		}
	}
	return m
}

const (
	beginMarker = "<!-- bench:results:begin (generated by go run ./bench -update) -->"
	endMarker   = "<!-- bench:results:end -->"
)

// updateBenchmarksMD replaces the text between the markers of path with md.
func updateBenchmarksMD(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return errors.New("bench: BENCHMARKS.md lacks the results markers")
	}
	s = s[:i+len(beginMarker)] + "\n\n" + md + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
