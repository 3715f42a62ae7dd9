//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/session"
)

// startRedis starts a redis-server of the harness's own on a free loopback port, with
// no persistence, and returns its URL.
func startRedis(ctx context.Context, ps *procs, dir string) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed")
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	p, err := ps.start("redis-server", bin, []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, nil, filepath.Join(dir, "redis.log"))
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	opt, _ := redis.ParseURL(url)
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return url, nil
		}
		if p.exited() || time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server did not answer: %v\n%s", err, p.tail(1024))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// minter stores a session the way a tokenhandler would and returns the Cookie header a
// browser then sends to /api/.
type minter func(ctx context.Context, s *session.Session) (string, error)

// redisMinter returns a minter for the Redis store of the tokenhandler started with
// redisURL and keys.
func redisMinter(ctx context.Context, redisURL string, keys session.KeyPair) (minter, error) {
	return nil, errors.New("this tokenhandler has no Redis store yet")
}
