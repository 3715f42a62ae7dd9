//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/tokenhandler/tokenhandler/bench/internal/harness"
)

// Targets.
const (
	maxRSSGrowth = 64 << 20
	maxP99Ratio  = 3.0
)

// result is what one drill measured.
type result struct {
	phases          []phaseStats // baseline, attack, release, after
	proto           string       // the session's protocol
	rampTime        time.Duration
	peak            usage // during the attack and the release
	released        bool
	releaseTime     time.Duration // until released, or until the drill gave up
	releaseBound    time.Duration // the target
	openAtCap       int64         // attack connections and streams still open when it gave up
	goroutinesAtCap int
	attack          attackSummary
	unknownVars     []string // settings this tokenhandler does not know
	load            [2]string
}

type check struct {
	name, value string
	ok          bool
}

func (r *result) checks() []check {
	base, during := r.phase("baseline"), r.phase("attack")
	growth := r.peak.rss - base.rss
	ratio := float64(during.p99) / float64(max(base.p99, time.Microsecond))
	release := fmt.Sprintf("released in %.1f s (target %.0f s)", r.releaseTime.Seconds(), r.releaseBound.Seconds())
	if !r.released {
		release = fmt.Sprintf("NOT released after %.1f s: %d attack connections/streams open, %d goroutines (baseline %d)",
			r.releaseTime.Seconds(), r.openAtCap, r.goroutinesAtCap, base.goroutines)
	}
	failed := 0
	for _, p := range r.phases {
		failed += p.failed
	}
	return []check{
		{"RSS growth < 64 MiB", fmt.Sprintf("%s (peak %s, baseline %s)", harness.MiB(growth), harness.MiB(r.peak.rss), harness.MiB(base.rss)), growth < maxRSSGrowth},
		{"session p99 under attack < 3x baseline", fmt.Sprintf("%.2fx (%v vs %v)", ratio, during.p99.Round(10*time.Microsecond), base.p99.Round(10*time.Microsecond)), ratio < maxP99Ratio},
		{"session: no failed request", fmt.Sprintf("%d failed", failed), failed == 0},
		{"everything released within the body timeout", release, r.released && r.releaseTime <= r.releaseBound},
	}
}

// missed names the targets the run missed.
func (r *result) missed(o *options) []string {
	var out []string
	for _, c := range r.checks() {
		if !c.ok {
			out = append(out, c.name)
		}
	}
	return out
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// markdown is the report: the settings, a table per phase, the targets.
func (r *result) markdown(o *options) string {
	var b strings.Builder
	listener := "plain HTTP/1.1"
	if o.tls {
		listener = "TLS (HTTP/1.1 and HTTP/2)"
	}
	fmt.Fprintf(&b, "### Abuse drill\n\n")
	fmt.Fprintf(&b, "- tokenhandler: public listener %s, provider %s, the session over %s, one GET every %v\n", listener, o.provider, r.proto, legitInterval)
	fmt.Fprintf(&b, "- attack: %d stalled, %d half-header, %d slow-body HTTP/1.1 connections, %d slow-body HTTP/2 streams (Content-Length %d, one byte every %v), for %v; all open after %.1f s\n",
		o.stalled, o.halfHeader, o.slowH1, o.slowH2, o.bodyBytes, o.trickle, o.attack, r.rampTime.Seconds())
	fmt.Fprintf(&b, "- given: TH_SERVER_BODY_TIMEOUT=%v, TH_SERVER_READ_HEADER_TIMEOUT=%v", o.bodyTimeout, o.readHeaderTimeout)
	if o.idleTimeout > 0 {
		fmt.Fprintf(&b, ", TH_SERVER_IDLE_TIMEOUT=%v", o.idleTimeout)
	}
	if o.replayMemory != "" {
		fmt.Fprintf(&b, ", TH_PROXY_REPLAY_MEMORY=%s", o.replayMemory)
	}
	for k, v := range o.thEnv {
		fmt.Fprintf(&b, ", %s=%s", k, v)
	}
	b.WriteString("\n")
	if len(r.unknownVars) > 0 {
		fmt.Fprintf(&b, "- **this tokenhandler does not know %s**: it ran with its built-in limits\n", strings.Join(r.unknownVars, ", "))
	}
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) at start %s, at end %s\n\n", r.load[0], r.load[1])

	b.WriteString("| phase | length | session requests | failed | p50 | p99 | RSS at end | Go heap in use at end | goroutines at end |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.phases {
		fmt.Fprintf(&b, "| %s | %.1f s | %d | %d | %.2f ms | %.2f ms | %s | %s | %d |\n", p.name, p.end.Sub(p.start).Seconds(),
			p.requests, p.failed, ms(p.p50), ms(p.p99), harness.MiB(p.rss), harness.MiB(p.heap), p.goroutines)
	}
	fmt.Fprintf(&b, "\nPeak during attack and release: RSS %s, Go heap in use %s, %d goroutines. "+
		"(A buffer allocated in full but not yet written counts in the heap long before its pages count in RSS.)\n\n",
		harness.MiB(r.peak.rss), harness.MiB(r.peak.heap), r.peak.goroutines)
	b.WriteString("| target | measured | met |\n|---|---|---|\n")
	for _, c := range r.checks() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, c.value, yes(c.ok))
	}
	fmt.Fprintf(&b, "\nAttack connections and streams opened: %d (HTTP/2 connections: %d, dial errors: %d). What the server did with them:\n\n",
		r.attack.opened, r.attack.h2Conns, r.attack.dialErrs)
	for _, a := range r.attack.answers {
		fmt.Fprintf(&b, "- %s\n", a)
	}
	if len(r.attack.answers) == 0 {
		b.WriteString("- nothing: the server closed none of them\n")
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
