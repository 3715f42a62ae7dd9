package sessiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/internal/need"
	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// RedisURL returns the URL of the Redis the tests share (need.EnvRedisURL), or ends
// the test through need.Missing: skipped outside CI, failed under CI=true. It checks that
// the server answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := need.Env(t, need.EnvRedisURL, "run ./test.sh, or start redis-server and export "+need.EnvRedisURL+"=redis://127.0.0.1:PORT")
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("sessiontest: %s does not parse: %v", need.EnvRedisURL, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		need.Missing(t, "a reachable Redis", fmt.Sprintf("%s=%s does not answer: %v", need.EnvRedisURL, u, err))
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
	proc *testbench.Process
}

// StartRedis starts a redis-server from need.EnvRedisBin (ending the test through
// need.Missing without it), on loopback only.
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
	bin := need.Env(t, need.EnvRedisBin, "run ./test.sh, or export "+need.EnvRedisBin+"=$(command -v redis-server)")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		need.Missing(t, "redis-server", need.EnvRedisBin+"="+bin+" is not a file")
	}
	dir := t.TempDir()
	s := &RedisServer{bin: bin, dir: dir, args: func(port string) []string { return args(dir, port) }}
	var err error
	for range 5 {
		port, perr := testbench.FreePort()
		if perr != nil {
			t.Fatalf("sessiontest: %v", perr)
		}
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
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
		var info string
		err := testbench.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			var err error
			info, err = c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", n)), nil
		})
		if err != nil {
			t.Fatalf("sessiontest: the cluster did not become ready: %v %q", err, info)
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
	var last error
	err := testbench.Poll(ctx, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		addr, err := c.GetMasterAddrByName(ctx, "mymaster").Result()
		last = err
		return err == nil && len(addr) == 2 && addr[1] == mport, nil
	})
	if err != nil {
		t.Fatalf("sessiontest: the sentinel does not know the master: %v (last: %v)", err, last)
	}
	return sentinel.URL + "?master_name=mymaster"
}

// Stop kills the server at once, as a crash would: clients see their connections
// closed and new ones refused.
func (s *RedisServer) Stop(t testing.TB) {
	t.Helper()
	s.stop()
}

// Start starts the server again on the same port, with the data it had. The port may
// linger a moment after Stop, so a start that fails is retried until a deadline.
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var err error
	if perr := testbench.Poll(ctx, 100*time.Millisecond, func(context.Context) (bool, error) {
		err = s.start()
		return err == nil, nil
	}); perr != nil {
		t.Fatalf("sessiontest: restart redis-server on %s: %v", s.Addr, err)
	}
}

// start starts redis-server on s.Addr's port and waits until it answers PING.
func (s *RedisServer) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	proc, err := testbench.Start(testbench.Spec{
		Name: "redis-server", Bin: s.bin, Args: s.args(port),
		Env: os.Environ(), LogPath: filepath.Join(s.dir, "redis.log"),
	})
	if err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = testbench.Poll(ctx, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		if proc.Exited() {
			return false, fmt.Errorf("redis-server exited at once (port %s taken?): %w", port, testbench.ErrExited)
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return c.Ping(pctx).Err() == nil, nil
	})
	if err != nil {
		proc.Kill()
		return fmt.Errorf("redis-server on port %s not ready: %w", port, err)
	}
	s.proc = proc
	return nil
}

func (s *RedisServer) stop() {
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	s.proc = nil
}
