//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports (from the Lua done hook; latencies in µs).
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // non-2xx/3xx answers
	Timeout    int64   `json:"timeout"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p999"`
	Mean       float64 `json:"mean"`
	Max        float64 `json:"max"`
}

func (r wrkResult) errors() int64 { return r.Connect + r.Read + r.Write + r.Status + r.Timeout }

func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// wrkLoad is one load: what to send, how hard and how long.
type wrkLoad struct {
	url      string
	headers  []string // "Name: value"
	method   string
	body     []byte // sent with every request when non-nil
	conns    int
	threads  int
	duration time.Duration
}

// The Lua script prints the summary and the latency percentiles (p99.9 included, which
// wrk --latency does not show) as one JSON line.
const wrkDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"mean":%.1f,"max":%.0f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
`

// runWrk runs wrk for l and parses its result. The run is bounded by l.duration plus
// 30 s; wrk itself stops at l.duration.
func runWrk(ctx context.Context, dir string, l wrkLoad) (wrkResult, error) {
	var script strings.Builder
	if l.method != "" && l.method != "GET" {
		fmt.Fprintf(&script, "wrk.method = %q\n", l.method)
	}
	if l.body != nil {
		// A Lua long string; the body is ASCII without "]]".
		fmt.Fprintf(&script, "wrk.body = [[%s]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", l.body)
	}
	script.WriteString(wrkDone)
	f, err := os.CreateTemp(dir, "wrk-*.lua")
	if err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script.String()); err != nil {
		f.Close()
		return wrkResult{}, err
	}
	f.Close()

	secs := max(int(l.duration.Round(time.Second)/time.Second), 1)
	args := []string{
		"-t", fmt.Sprint(l.threads), "-c", fmt.Sprint(l.conns), "-d", fmt.Sprintf("%ds", secs),
		"--timeout", "10s", "-s", f.Name(),
	}
	for _, h := range l.headers {
		args = append(args, "-H", h)
	}
	args = append(args, l.url)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("bench: wrk %s: %w: %s", l.url, err, errOut.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if js, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				return wrkResult{}, fmt.Errorf("bench: wrk output: %w", err)
			}
			return r, nil
		}
	}
	return wrkResult{}, fmt.Errorf("bench: wrk printed no result:\n%s%s", out.String(), errOut.String())
}
