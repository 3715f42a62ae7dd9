package drill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replica is one tokenhandler process, stopped and started again on the same ports.
type replica struct {
	t     testing.TB
	base  []string // the settings without the listeners
	name  string
	bin   string
	env   []string // TH_* settings, the same for every replica but the listeners
	addr  string   // public listener, host:port
	admin string   // admin listener, host:port
	dir   string
	proc  *proc
	runs  int
}

func newReplica(t testing.TB, name, bin string, env []string) *replica {
	r := &replica{name: name, bin: bin, dir: t.TempDir(), t: t, base: env}
	r.pickPorts()
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.kill()
		}
		if t.Failed() {
			for run := 1; run <= r.runs; run++ {
				path := filepath.Join(r.dir, fmt.Sprintf("%s-%d.log", r.name, run))
				t.Logf("drill: %s (run %d): what it logged besides requests:\n%s", r.name, run, notable(path, 40))
			}
		}
	})
	return r
}

// pickPorts chooses the replica's listeners.
func (r *replica) pickPorts() {
	r.addr = fmt.Sprintf("127.0.0.1:%d", freePort(r.t))
	r.admin = fmt.Sprintf("127.0.0.1:%d", freePort(r.t))
	r.env = append(append([]string{}, r.base...), "TH_LISTEN="+r.addr, "TH_ADMIN_LISTEN="+r.admin)
}

// startFirst is the first start: when a port picked a moment ago has been taken by
// another process meanwhile, it picks others and tries again.
func (r *replica) startFirst(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := r.start(ctx)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		r.pickPorts()
	}
}

// start runs the replica and waits until its /readyz answers 200 (provider discovered,
// Redis reachable).
func (r *replica) start(ctx context.Context) error {
	r.runs++
	logPath := filepath.Join(r.dir, fmt.Sprintf("%s-%d.log", r.name, r.runs))
	p, err := startProc(r.name, r.bin, []string{"serve"}, r.env, logPath)
	if err != nil {
		return err
	}
	r.proc = p
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", r.name, p.err, p.logTail(20))
		}
		if ready(ctx, "http://"+r.admin+"/readyz") {
			return nil
		}
		select {
		case <-ctx.Done():
			p.kill()
			return fmt.Errorf("%s not ready in 60 s:\n%s", r.name, p.logTail(20))
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, as a rolling restart does, and waits for the graceful drain to
// end. tokenhandler must exit 0 having drained its in-flight requests; it reports
// what its log says about the shutdown on failure.
func (r *replica) stop() error {
	r.proc.signal(syscall.SIGTERM)
	if err := r.proc.wait(40 * time.Second); err != nil { // shutdownGrace is 30 s
		return fmt.Errorf("%s after SIGTERM: %w\n%s", r.name, err, r.proc.logTail(20))
	}
	if log := r.proc.logTail(200); !strings.Contains(log, "draining in-flight requests") {
		return fmt.Errorf("%s exited without its drain message:\n%s", r.name, r.proc.logTail(20))
	}
	return nil
}

var probeClient = &http.Client{
	Timeout:   500 * time.Millisecond,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// ready reports whether u (a /readyz URL) answers 200.
func ready(ctx context.Context, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// notable returns the last lines of a replica's log that are not access-log lines
// ("msg":"request" at INFO): warnings, errors, refresh outcomes, shutdown.
func notable(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	var out []string
	var lastMsg string
	repeats := 0
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(l, `"level":"INFO","msg":"request"`) {
			continue
		}
		// A line repeated (readyz's warning every 50 ms during a failover) is kept
		// once with its count, so that the lines around it stay in view.
		msg, _, _ := strings.Cut(l[strings.Index(l, `"level"`)+1:], `,"err"`)
		if msg == lastMsg {
			repeats++
			continue
		}
		if repeats > 0 {
			out = append(out, fmt.Sprintf("  (the line above %d more times)", repeats))
		}
		lastMsg, repeats = msg, 0
		out = append(out, l)
	}
	if repeats > 0 {
		out = append(out, fmt.Sprintf("  (the line above %d more times)", repeats))
	}
	if len(out) > lines {
		out = append([]string{"[...]"}, out[len(out)-lines:]...)
	}
	return strings.Join(out, "\n")
}
