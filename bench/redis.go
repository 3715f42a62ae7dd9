//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/session"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
)

// startRedis starts a redis-server of the harness's own on a free loopback port, with
// no persistence, and returns its URL and process.
func startRedis(ctx context.Context, ps *procs, dir string) (string, *testbench.Process, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("redis-server is not installed")
	}
	port, err := testbench.FreePort()
	if err != nil {
		return "", nil, err
	}
	p, err := ps.start("redis-server", bin, []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, nil, filepath.Join(dir, "redis.log"))
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	opt, _ := redis.ParseURL(url)
	c := redis.NewClient(opt)
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var last error
	err = testbench.Poll(wctx, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		if p.Exited() {
			return false, testbench.ErrExited
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		last = c.Ping(pctx).Err()
		return last == nil, nil
	})
	if err != nil {
		p.Stop(stopGrace)
		return "", nil, fmt.Errorf("redis-server did not answer: %w (last: %v)\n%s", err, last, p.Tail(30))
	}
	return url, p, nil
}

// minter stores a session the way a tokenhandler would and returns the Cookie header a
// browser then sends to /api/.
type minter func(ctx context.Context, s *session.Session) (string, error)

// redisMinter returns a minter for the Redis store of a tokenhandler started with
// redisURL and keys and the default key prefix, lifetime and idle timeout: what it
// stores there, that tokenhandler loads. The connection lives until ctx ends.
func redisMinter(ctx context.Context, redisURL string, keys session.KeyPair) (minter, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	client := redis.NewClient(opt)
	shared := session.NewRedis(client, session.RedisOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	context.AfterFunc(ctx, func() {
		_ = shared.Close()
		_ = client.Close()
	})
	store, err := session.NewRedisStore(shared, session.RedisStoreOptions{Keys: []session.KeyPair{keys}})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, s *session.Session) (string, error) {
		return storeCookies(ctx, store, s)
	}, nil
}
