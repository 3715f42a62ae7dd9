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
	cmd  *exec.Cmd
	done chan struct{}
}

// StartRedis starts a redis-server from idptest.EnvRedisBin (ending the test through
// idptest.Need without it), on loopback only.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin := idptest.NeedEnv(t, idptest.EnvRedisBin, "run ./test.sh, or export "+idptest.EnvRedisBin+"=$(command -v redis-server)")
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		idptest.Need(t, "redis-server", idptest.EnvRedisBin+"="+bin+" is not a file")
	}
	s := &RedisServer{bin: bin, dir: t.TempDir()}
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
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
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
