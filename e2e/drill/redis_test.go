package drill

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/internal/need"
)

// redisServer is one redis-server process on a loopback port.
type redisServer struct {
	t    testing.TB
	name string
	bin  string
	dir  string
	port int
	proc *proc
	runs int
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

// startRedis runs redis-server (TOKENHANDLER_TEST_REDIS_BIN) without persistence, with
// extra arguments (e.g. --replicaof), and stops it at cleanup.
func startRedis(t testing.TB, name string, extra ...string) *redisServer {
	t.Helper()
	bin := need.Env(t, need.EnvRedisBin, "run ./test.sh, or export "+need.EnvRedisBin+"=$(command -v redis-server)")
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, extra...)
		p, err := startProc(name, bin, args, nil, filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, attempt)))
		if err != nil {
			t.Fatal(err)
		}
		if err := waitRedis(t.Context(), p, port); err == nil {
			r := &redisServer{t: t, name: name, bin: bin, dir: dir, port: port, proc: p, runs: attempt + 1}
			t.Cleanup(func() {
				r.proc.kill()
				if t.Failed() {
					t.Logf("drill: log of %s:\n%s", name, r.proc.logTail(30))
				}
			})
			return r
		} else if attempt == 2 {
			p.kill()
			t.Fatalf("start %s: %v\n%s", name, err, p.logTail(20))
		}
		p.kill() // most likely the port was taken meanwhile: another one
	}
}

// waitRedis waits until the process answers PING on port.
func waitRedis(ctx context.Context, p *proc, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		if p.exited() {
			return fmt.Errorf("exited: %v", p.err)
		}
		if out, err := redisCmd(ctx, port, "PING"); err == nil && out == "+PONG" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisCmd sends one inline command to 127.0.0.1:port and returns the first line of
// the answer (RESP: "+OK", "-ERR ...", ":1", "$n" followed by the bulk string's line,
// joined with a space).
func redisCmd(ctx context.Context, port int, cmd string) (string, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "*") || strings.HasPrefix(line, "$") {
		// An array or bulk string: read what follows (small answers only).
		var more []string
		for {
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			l, err := br.ReadString('\n')
			if err != nil {
				break
			}
			more = append(more, strings.TrimRight(l, "\r\n"))
		}
		line += " " + strings.Join(more, " ")
	}
	return line, nil
}

// sentinelSet is a Redis master, one replica and three Sentinels watching them, as a
// small production deployment has.
type sentinelSet struct {
	t          testing.TB
	bin        string
	nodes      []*redisServer // the first master and its replica; they swap roles
	sentinels  []*proc
	sentPorts  []int
	masterName string
}

// The Sentinel timings: the master is declared down after downAfter without an answer.
const (
	sentinelDownAfter = 1000 // ms
	sentinelQuorum    = 2
)

// startSentinels runs master, replica and three redis-sentinel processes.
func startSentinels(t testing.TB) *sentinelSet {
	t.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		need.Missing(t, "redis-sentinel", "install Debian's redis-sentinel package (.ci/run does)")
	}
	s := &sentinelSet{t: t, bin: bin, masterName: "drill"}
	master := startRedis(t, "redis-a")
	replica := startRedis(t, "redis-b", "--replicaof", "127.0.0.1", fmt.Sprint(master.port))
	s.nodes = []*redisServer{master, replica}
	dir := t.TempDir()
	for i := range 3 {
		var p *proc
		var port int
		for attempt := 0; ; attempt++ {
			port = freePort(t)
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d-%d.conf", i, attempt))
			// Sentinel rewrites its config file: it must be writable and its own.
			cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
				"sentinel monitor %s 127.0.0.1 %d %d\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s 10000\n"+
				"sentinel parallel-syncs %s 1\n",
				port, dir, s.masterName, master.port, sentinelQuorum,
				s.masterName, sentinelDownAfter, s.masterName, s.masterName)
			if err := writeFile(conf, cfg); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("sentinel-%d", i)
			if p, err = startProc(name, bin, []string{conf}, nil, filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, attempt))); err != nil {
				t.Fatal(err)
			}
			if err = waitRedis(t.Context(), p, port); err == nil {
				break
			}
			p.kill()
			if attempt == 2 {
				t.Fatalf("start %s: %v\n%s", name, err, p.logTail(20))
			}
		}
		s.sentinels = append(s.sentinels, p)
		s.sentPorts = append(s.sentPorts, port)
		t.Cleanup(func() {
			p.kill()
			if t.Failed() {
				t.Logf("drill: log of %s:\n%s", p.name, p.logTail(30))
			}
		})
	}
	// Ready when every Sentinel knows the replica and the other Sentinels: only then
	// can they agree on a failover.
	s.waitFor("the Sentinels to see the replica and each other", func(port int) bool {
		out, err := redisCmd(t.Context(), port, "SENTINEL MASTER "+s.masterName)
		return err == nil && field(out, "num-slaves") == "1" && field(out, "num-other-sentinels") == "2"
	})
	return s
}

// url is tokenhandler's redis.url for the set: the Sentinels and the master's name.
func (s *sentinelSet) url() string {
	u := fmt.Sprintf("redis://127.0.0.1:%d/0?master_name=%s", s.sentPorts[0], s.masterName)
	for _, p := range s.sentPorts[1:] {
		u += fmt.Sprintf("&addr=127.0.0.1:%d", p)
	}
	return u
}

// masterPort asks the first Sentinel which port the master is on now.
func (s *sentinelSet) masterPort() string { return s.masterPortAt(s.sentPorts[0]) }

// crashMaster kills the master on port (SIGKILL: no goodbye to anyone).
func (s *sentinelSet) crashMaster(port string) {
	for _, r := range s.nodes {
		if fmt.Sprint(r.port) == port {
			r.proc.signal(syscall.SIGKILL)
			<-r.proc.done
			return
		}
	}
	s.t.Fatalf("drill: no Redis on the master's port %s", port)
}

// waitFor polls every Sentinel until cond holds for each, or fails the test after 30 s.
func (s *sentinelSet) waitFor(what string, cond func(port int) bool) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, port := range s.sentPorts {
		for !cond(port) {
			if time.Now().After(deadline) {
				s.t.Fatalf("drill: waited 30 s for %s (sentinel :%d)", what, port)
			}
			time.Sleep(50 * time.Millisecond) // polling an outside process's state
		}
	}
}

// field finds name's value in a flattened RESP map ("... $len name $len value ...").
func field(out, name string) string {
	f := strings.Fields(out)
	for i := 0; i+2 < len(f); i++ {
		if f[i] == name {
			return f[i+2]
		}
	}
	return ""
}

// masterPortAt asks the Sentinel on port which port the master is on.
func (s *sentinelSet) masterPortAt(port int) string {
	out, err := redisCmd(s.t.Context(), port, "SENTINEL GET-MASTER-ADDR-BY-NAME "+s.masterName)
	if err != nil {
		return ""
	}
	f := strings.Fields(out) // "*2 $9 127.0.0.1 $5 PORT"
	if len(f) < 5 {
		return ""
	}
	return f[4]
}

// restartOldMaster starts the crashed master (on port old) again and waits until it
// replicates the new master, in sync, and every Sentinel sees it as a healthy replica:
// ready for the next failover.
func (s *sentinelSet) restartOldMaster(old string) {
	s.t.Helper()
	r := s.nodes[0]
	if fmt.Sprint(r.port) != old {
		r = s.nodes[1]
	}
	r.restart()
	master := s.masterPort()
	// Sentinel reconfigures a returning master after a while (about 10 s); until then it
	// is an empty master of its own. Its own INFO is the truth, not Sentinel's last view.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := redisCmd(s.t.Context(), r.port, "INFO replication")
		if err == nil && strings.Contains(out, "role:slave") && strings.Contains(out, "master_port:"+master) &&
			strings.Contains(out, "master_link_status:up") && strings.Contains(out, "master_sync_in_progress:0") {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("drill: %s did not become an in-sync replica of :%s in 60 s: %v %q", r.name, master, err, out)
		}
		time.Sleep(50 * time.Millisecond) // polling an outside process's state
	}
	s.waitFor(r.name+" back as a replica", func(port int) bool {
		out, err := redisCmd(s.t.Context(), port, "SENTINEL REPLICAS "+s.masterName)
		return err == nil && field(out, "port") == old && field(out, "flags") == "slave" && field(out, "master-link-status") == "ok"
	})
}

// restart starts the stopped server again on its port (no --replicaof: Sentinel tells
// it whom to follow).
func (r *redisServer) restart() {
	t := r.t
	t.Helper()
	r.runs++
	args := []string{"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir}
	p, err := startProc(r.name, r.bin, args, nil, filepath.Join(r.dir, fmt.Sprintf("%s-%d.log", r.name, r.runs)))
	if err != nil {
		t.Fatal(err)
	}
	r.proc = p
	if err := waitRedis(t.Context(), p, r.port); err != nil {
		t.Fatalf("restart %s: %v\n%s", r.name, err, p.logTail(20))
	}
}

var (
	masterOffsetRe  = regexp.MustCompile(`master_repl_offset:(\d+)`)
	replicaOffsetRe = regexp.MustCompile(`slave0:\S*offset=(\d+)`)
)

// waitReplicated waits until the replica has acknowledged everything the master on
// port has written (Redis replicates asynchronously: a write the replica has not got
// yet is lost when the master dies).
func (s *sentinelSet) waitReplicated(port string) {
	s.t.Helper()
	p, _ := strconv.Atoi(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := redisCmd(s.t.Context(), p, "INFO replication")
		if err == nil {
			m, r := masterOffsetRe.FindStringSubmatch(out), replicaOffsetRe.FindStringSubmatch(out)
			if m != nil && r != nil && m[1] == r[1] {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("drill: the replica did not catch up with the master in 10 s: %v %q", err, out)
		}
		time.Sleep(5 * time.Millisecond) // polling an outside process's state
	}
}
