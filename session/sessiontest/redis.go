package sessiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/e2e/idptest"
)

// RedisURL returns the URL of the Redis the tests share (idptest.EnvRedisURL), or ends
// the test through idptest.Need: skipped outside CI, failed under CI=true. It checks that
// the server answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := idptest.NeedEnv(t, idptest.EnvRedisURL, "run ./test.sh, or start redis-server and export "+idptest.EnvRedisURL+"=redis://127.0.0.1:PORT")
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("sessiontest: %s does not parse: %v", idptest.EnvRedisURL, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		idptest.Need(t, "a reachable Redis", fmt.Sprintf("%s=%s does not answer: %v", idptest.EnvRedisURL, u, err))
	}
	return u
}

// KeyPrefix returns a key prefix of the test's own ("test:<random>:") and deletes every
// key under it when the test ends, so tests can share one Redis.
func KeyPrefix(t testing.TB, redisURL string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		opts, err := redis.ParseURL(redisURL)
		if err != nil {
			return
		}
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return prefix
}

// RedisServer is a redis-server of the test's own, on a free loopback port, which the
// test may stop and start again on the same port (to see what an outage does). It keeps
// its data across a restart (an append-only file written on every command), as a
// production Redis with persistence would. It is stopped when the test ends.
type RedisServer struct {
	URL  string // redis://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	bin  string
	dir  string
	args func(port string) []string // the command line after the binary
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a redis-server from idptest.EnvRedisBin (ending the test through
// idptest.Need without it), on loopback only.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	return startServer(t, func(dir, port string) []string {
		return []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir}
	})
}

// startServer starts redis-server with the arguments args gives for its directory and
// port, on a free port.
func startServer(t testing.TB, args func(dir, port string) []string) *RedisServer {
	t.Helper()
	bin := idptest.NeedEnv(t, idptest.EnvRedisBin, "run ./test.sh, or export "+idptest.EnvRedisBin+"=$(command -v redis-server)")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		idptest.Need(t, "redis-server", idptest.EnvRedisBin+"="+bin+" is not a file")
	}
	dir := t.TempDir()
	s := &RedisServer{bin: bin, dir: dir, args: func(port string) []string { return args(dir, port) }}
	var err error
	for range 5 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("sessiontest: free port: %v", err)
		}
		s.Addr = l.Addr().String()
		l.Close()
		s.URL = "redis://" + s.Addr
		if err = s.start(); err == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("sessiontest: start redis-server: %v", err)
	return nil
}

// StartRedisCluster starts a Redis Cluster of n masters (no replicas), the hash slots
// split evenly, and returns its URL in tokenhandler's form:
// redis://NODE1?addr=NODE2&addr=NODE3...
func StartRedisCluster(t testing.TB, n int) string {
	t.Helper()
	nodes := make([]*RedisServer, n)
	for i := range nodes {
		nodes[i] = startServer(t, func(dir, port string) []string {
			return []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*redis.Client, n)
	for i, nd := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: nd.Addr})
		defer clients[i].Close()
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("sessiontest: cluster addslotsrange on %s: %v", nd.Addr, err)
		}
	}
	for _, nd := range nodes[1:] {
		host, port, _ := net.SplitHostPort(nd.Addr)
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("sessiontest: cluster meet %s: %v", nd.Addr, err)
		}
	}
	for _, c := range clients {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("sessiontest: the cluster did not become ready: %v %q", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	u := nodes[0].URL + "?"
	for i, nd := range nodes[1:] {
		if i > 0 {
			u += "&"
		}
		u += "addr=" + nd.Addr
	}
	return u
}

// StartRedisSentinel starts a master and one Sentinel that watches it as "mymaster",
// and returns the URL in tokenhandler's form: redis://SENTINEL?master_name=mymaster.
func StartRedisSentinel(t testing.TB) string {
	t.Helper()
	master := StartRedis(t)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	sentinel := startServer(t, func(dir, port string) []string {
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 5000\n", port, dir, mhost, mport)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("sessiontest: sentinel config: %v", err)
		}
		return []string{conf, "--sentinel"}
	})
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		addr, err := c.GetMasterAddrByName(ctx, "mymaster").Result()
		if err == nil && len(addr) == 2 && addr[1] == mport {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("sessiontest: the sentinel does not know the master: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return sentinel.URL + "?master_name=mymaster"
}

// Stop kills the server at once, as a crash would: clients see their connections
// closed and new ones refused.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	s.stop()
}

// Start starts the server again on the same port, with the data it had.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	var err error
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger a moment
	}
	t.Fatalf("sessiontest: restart redis-server on %s: %v", s.Addr, err)
}

func (s *RedisServer) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args(port)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at once (port %s taken?)", port)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on port %s not ready in 10s", port)
}

func (s *RedisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}
