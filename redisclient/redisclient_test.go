package redisclient_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenhandler/tokenhandler/redisclient"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url        string
		mode       redisclient.Mode
		addrs      []string
		db         int
		user, pass string
		master     string
		sentPass   string
		tls        bool
	}{
		{url: "redis://127.0.0.1:6379", mode: redisclient.Standalone, addrs: []string{"127.0.0.1:6379"}},
		{url: "redis://redis", mode: redisclient.Standalone, addrs: []string{"redis:6379"}},
		{url: "redis://:s3cret@redis:6380/2", mode: redisclient.Standalone, addrs: []string{"redis:6380"}, db: 2, pass: "s3cret"},
		{url: "rediss://app:pw@redis.example.com", mode: redisclient.Standalone, addrs: []string{"redis.example.com:6379"}, user: "app", pass: "pw", tls: true},
		{url: "redis://[::1]:7000", mode: redisclient.Standalone, addrs: []string{"[::1]:7000"}},
		{url: "redis://:pw@s1:26379/1?master_name=mymaster&addr=s2:26379&addr=s3", mode: redisclient.Sentinel,
			addrs: []string{"s1:26379", "s2:26379", "s3:6379"}, db: 1, pass: "pw", master: "mymaster"},
		{url: "redis://s1:26379?master_name=m&sentinel_password=sp", mode: redisclient.Sentinel, addrs: []string{"s1:26379"}, master: "m", sentPass: "sp"},
		{url: "redis://n1:7000?addr=n2:7001&addr=n3:7002", mode: redisclient.Cluster, addrs: []string{"n1:7000", "n2:7001", "n3:7002"}},
		{url: "rediss://:pw@?addr=n1:7000&addr=n2:7000", mode: redisclient.Cluster, addrs: []string{"n1:7000", "n2:7000"}, pass: "pw", tls: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			uo, mode, err := redisclient.Parse(redisclient.Options{URL: tc.url})
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tc.url, err)
			}
			if mode != tc.mode || !slices.Equal(uo.Addrs, tc.addrs) || uo.DB != tc.db || uo.Username != tc.user || uo.Password != tc.pass ||
				uo.MasterName != tc.master || uo.SentinelPassword != tc.sentPass || (uo.TLSConfig != nil) != tc.tls {
				t.Errorf("Parse(%q) = mode %s addrs %v db %d user %q master %q tls %v, want %s %v %d %q %q %v",
					tc.url, mode, uo.Addrs, uo.DB, uo.Username, uo.MasterName, uo.TLSConfig != nil, tc.mode, tc.addrs, tc.db, tc.user, tc.master, tc.tls)
			}
		})
	}
}

// The timeouts keep an outage short: defaults apply, one dial attempt, no retry unless
// asked, and 0 retries means none (go-redis's -1), not go-redis's default of 3.
func TestParseTimeouts(t *testing.T) {
	uo, _, err := redisclient.Parse(redisclient.Options{URL: "redis://r"})
	if err != nil {
		t.Fatal(err)
	}
	if uo.DialTimeout != 500*time.Millisecond || uo.ReadTimeout != 500*time.Millisecond || uo.WriteTimeout != 500*time.Millisecond ||
		uo.MaxRetries != -1 || uo.DialerRetries != 1 || !uo.ContextTimeoutEnabled {
		t.Errorf("Parse(defaults) = dial %v read %v write %v retries %d dial attempts %d ctx %v, want 500ms 500ms 500ms -1 1 true",
			uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout, uo.MaxRetries, uo.DialerRetries, uo.ContextTimeoutEnabled)
	}
	uo, _, err = redisclient.Parse(redisclient.Options{URL: "redis://r", DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 3 * time.Second, MaxRetries: 2, PoolSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	if uo.DialTimeout != time.Second || uo.ReadTimeout != 2*time.Second || uo.WriteTimeout != 3*time.Second || uo.MaxRetries != 2 || uo.PoolSize != 7 {
		t.Errorf("Parse(set) = %v %v %v %d %d, want 1s 2s 3s 2 7", uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout, uo.MaxRetries, uo.PoolSize)
	}
}

func TestParseRefuses(t *testing.T) {
	const secret = "hunter2-secret"
	for _, u := range []string{
		"",
		"http://:" + secret + "@r",
		"redis://:" + secret + "@r?master_nmae=x",
		"redis://:" + secret + "@r?master_name=",
		"redis://:" + secret + "@r/x",
		"redis://:" + secret + "@r/-1",
		"redis://:" + secret + "@r:0",
		"redis://:" + secret + "@r:99999",
		"redis://:" + secret + "@r:port",
		"redis://:" + secret + "@",
		"redis://:" + secret + "@n1?addr=n2&addr=:7000",
		"redis://:" + secret + "@n1/3?addr=n2", // a Cluster has database 0 only
		"redis://:" + secret + "@r?sentinel_password=x",
		"redis://:" + secret + "@r?master_name=a&master_name=b",
		"redis://:" + secret + "@r#frag",
		"redis:" + secret,
		"redis://:" + secret + "@r?%zz",
	} {
		_, _, err := redisclient.Parse(redisclient.Options{URL: u})
		if err == nil {
			t.Errorf("Parse(%q) = nil error, want an error", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%q) error quotes the password: %v", u, err)
		}
	}
}

func TestParseTLS(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := redisclient.Parse(redisclient.Options{URL: "rediss://r", TLSCAFile: bad}); err == nil {
		t.Errorf("Parse with a CA file without certificates = nil error, want an error")
	}
	if _, _, err := redisclient.Parse(redisclient.Options{URL: "rediss://r", TLSCAFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Errorf("Parse with a missing CA file = nil error, want an error")
	}
	if _, _, err := redisclient.Parse(redisclient.Options{URL: "redis://r", InsecureSkipVerify: true}); err == nil {
		t.Errorf("Parse(redis://, InsecureSkipVerify) = nil error, want an error (TLS options need rediss://)")
	}
	uo, _, err := redisclient.Parse(redisclient.Options{URL: "rediss://r", InsecureSkipVerify: true})
	if err != nil || uo.TLSConfig == nil || !uo.TLSConfig.InsecureSkipVerify {
		t.Errorf("Parse(rediss://, InsecureSkipVerify) = %v, want TLS without verification", err)
	}
}

// The client New builds talks to a real Redis.
func TestNewTalksToRedis(t *testing.T) {
	url := sessiontest.RedisURL(t)
	c, mode, err := redisclient.New(redisclient.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if mode != redisclient.Standalone {
		t.Errorf("New(%s) mode = %s, want standalone", url, mode)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("Ping = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"redis://r", "rediss://u:p@r:1/2?master_name=m&addr=x", "redis://?addr=a&addr=b", "redis://[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		uo, mode, err := redisclient.Parse(redisclient.Options{URL: u})
		if err != nil {
			return
		}
		if len(uo.Addrs) == 0 || (mode == redisclient.Cluster) != (len(uo.Addrs) > 1 && uo.MasterName == "") {
			t.Errorf("Parse(%q) = mode %s with %d addresses", u, mode, len(uo.Addrs))
		}
	})
}
