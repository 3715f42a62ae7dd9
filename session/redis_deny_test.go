package session_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenhandler/tokenhandler/internal/testbench"
	"github.com/tokenhandler/tokenhandler/session"
	"github.com/tokenhandler/tokenhandler/session/sessiontest"
)

const denyLifetime = 12 * time.Hour

func newDenyList(t testing.TB, tr *testRedis, clk *clock) *session.DenyList {
	t.Helper()
	return session.NewDenyList(tr.r, session.DenyListOptions{Lifetime: denyLifetime, Now: clk.Now})
}

// eventually waits up to 3 s for cond. Pub/sub delivers asynchronously and the deny
// list announces nothing when it applies an entry, so there is no event to wait on:
// poll, with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := testbench.Poll(ctx, 10*time.Millisecond, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%s: not within 3s", what)
	}
}

// A back-channel logout received by one replica ends the cookie session at every
// replica, through the deny list: by sid every session of that provider session, by sub
// only the sessions that began before the logout.
func TestDenyListAcrossReplicas(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	clk := newClock()
	a := newDenyList(t, newTestRedis(t, url, prefix), clk)
	b := newDenyList(t, newTestRedis(t, url, prefix), clk)
	key := newKey(t)
	storeB := newStoreWith(t, session.CookieOptions{Keys: []session.KeyPair{key}, Now: clk.Now, Ended: b.Ended})

	mk := func(sid, sub string) *session.Session {
		s := sampleSession(clk.Now(), 10, 10, 10)
		s.SID, s.Subject = sid, sub
		s.Expiry = clk.Now().Add(denyLifetime) // as the callback sets it
		return s
	}
	s1, s2, s3 := mk("sid-1", "alice"), mk("sid-2", "alice"), mk("sid-3", "bob")
	for _, s := range []*session.Session{s1, s2, s3} {
		if b.Ended(s) {
			t.Fatalf("session %s/%s ended before any logout", s.SID, s.Subject)
		}
	}

	clk.Advance(time.Minute)
	if _, err := a.EndSessions(ctx, "sid-1", "", clk.Now()); err != nil {
		t.Fatalf("EndSessions(sid-1) = %v", err)
	}
	if !a.Ended(s1) {
		t.Errorf("the receiving replica does not end the session at once")
	}
	eventually(t, "the other replica ends the sid-1 session", func() bool { return b.Ended(s1) })
	if b.Ended(s2) || b.Ended(s3) {
		t.Errorf("a logout of sid-1 ended another session")
	}
	cookies, err := storeB.Save(ctx, requestWith("/auth/callback"), s1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storeB.Load(ctx, requestWith("/api/", set(cookies)...)); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("CookieStore.Load of an ended session = %v, want ErrNoSession", err)
	}

	if _, err := a.EndSessions(ctx, "", "alice", clk.Now()); err != nil {
		t.Fatalf("EndSessions(sub alice) = %v", err)
	}
	eventually(t, "the other replica ends alice's sessions", func() bool { return b.Ended(s2) })
	if b.Ended(s3) {
		t.Errorf("a logout of alice ended bob's session")
	}
	// alice signs in again after the logout: that session is not ended.
	clk.Advance(time.Second)
	later := mk("sid-4", "alice")
	if b.Ended(later) || a.Ended(later) {
		t.Errorf("a sign-in after the sub logout is ended, want it to work")
	}
	// A replica started now loads every entry.
	c := newDenyList(t, newTestRedis(t, url, prefix), clk)
	if !c.Ended(s1) || !c.Ended(s2) || c.Ended(s3) || c.Ended(later) {
		t.Errorf("a new replica's deny list: ended s1=%v s2=%v s3=%v later=%v, want true true false false",
			c.Ended(s1), c.Ended(s2), c.Ended(s3), c.Ended(later))
	}
	// Entries end with the session lifetime.
	clk.Advance(denyLifetime)
	if c.Ended(s1) || c.Ended(s2) {
		t.Errorf("deny entries outlive the session lifetime")
	}
	if err := c.Reload(ctx); err != nil || c.Len() != 0 {
		t.Errorf("Reload after the lifetime = %v with %d entries, want none", err, c.Len())
	}
}

// What was written while a replica's subscription was down arrives with the full load
// after it reconnects.
func TestDenyListReloadsOnReconnect(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	clk := newClock()
	tr := newTestRedis(t, url, prefix)
	d := newDenyList(t, tr, clk)
	s := sampleSession(clk.Now(), 10, 10, 10)
	s.SID = "missed-sid"
	// An entry written without a notification (as if published while we were away).
	member := "sid " + itoa(clk.Now().UnixMilli()) + " missed-sid"
	if err := tr.client.ZAdd(ctx, prefix+"deny", redisZ(clk.Now().Add(denyLifetime), member)).Err(); err != nil {
		t.Fatal(err)
	}
	if d.Ended(s) {
		t.Fatalf("entry applied without a notification or reload")
	}
	// Drop every pub/sub connection: the subscriber reconnects and reloads.
	if err := tr.client.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reconnected replica loads the missed entry", func() bool { return d.Ended(s) })
}

// Garbage on the deny channel is ignored: a malformed entry ends no session, even one
// that would be live and name a real session if it were read loosely. Every entry is
// dated now, so one that slipped through would still be in force (an entry dated 1970
// has expired anyway, and proves nothing). Messages on one channel arrive in order, so
// once the valid entry published last is applied, every malformed one was handled.
func TestDenyListIgnoresMalformedEntries(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	clk := newClock()
	tr := newTestRedis(t, url, prefix)
	d := newDenyList(t, tr, clk)
	now := itoa(clk.Now().UnixMilli())
	victim := sampleSession(clk.Now(), 10, 10, 10)
	victim.SID, victim.Subject = "victim", "victim"
	victim.Expiry = clk.Now().Add(denyLifetime)
	malformed := []struct{ name, member string }{
		{name: "empty", member: ""},
		{name: "kind only", member: "sid"},
		{name: "no time", member: "sid victim"},
		{name: "no value", member: "sid " + now},
		{name: "empty value", member: "sid " + now + " "},
		{name: "unknown kind", member: "xxx " + now + " victim"},
		{name: "kind in capitals", member: "SID " + now + " victim"},
		{name: "time not a number", member: "sub " + now + "a victim"},
		{name: "time with a fraction", member: "sid " + now + ".5 victim"},
		{name: "two spaces", member: "sid  " + now + " victim"},
	}
	for _, m := range malformed {
		if err := tr.client.Publish(ctx, prefix+"events:deny", m.member).Err(); err != nil {
			t.Fatalf("publish %s: %v", m.name, err)
		}
	}
	// The control case: a valid entry, published last.
	ok := sampleSession(clk.Now(), 10, 10, 10)
	ok.SID = "ok"
	if err := tr.client.Publish(ctx, prefix+"events:deny", "sid "+now+" ok").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the valid entry arrives", func() bool { return d.Ended(ok) })
	if d.Ended(victim) {
		t.Errorf("a malformed entry ended the session of sid and sub %q", victim.SID)
	}
	if n := d.Len(); n != 1 {
		t.Errorf("Len() = %d after %d malformed entries and one valid one, want 1", n, len(malformed))
	}
}

// BenchmarkDenyListEnded is what the deny list adds to every cookie-mode request.
func BenchmarkDenyListEnded(b *testing.B) {
	url := sessiontest.RedisURL(b)
	clk := newClock()
	d := newDenyList(b, newTestRedis(b, url, ""), clk)
	for i := range 1000 {
		if _, err := d.EndSessions(ctx, "sid-"+itoa(int64(i)), "", clk.Now()); err != nil {
			b.Fatal(err)
		}
	}
	s := sampleSession(clk.Now(), 10, 10, 10)
	b.ReportAllocs()
	for b.Loop() {
		if d.Ended(s) {
			b.Fatal("ended")
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func redisZ(until time.Time, member string) redis.Z {
	return redis.Z{Score: float64(until.UnixMilli()), Member: member}
}

// A replica that starts while Redis is down subscribes and loads the deny list by itself
// once Redis is up.
func TestDenyListStartsWhileRedisIsDown(t *testing.T) {
	srv := sessiontest.StartRedis(t)
	prefix := "test:down:"
	clk := newClock()
	srv.Stop(t)
	late := newDenyList(t, newTestRedis(t, srv.URL, prefix), clk)
	srv.Start(t)
	s := sampleSession(clk.Now(), 10, 10, 10)
	var other *session.DenyList
	eventually(t, "a replica can reach the restarted Redis", func() bool {
		other = newDenyList(t, newTestRedis(t, srv.URL, prefix), clk)
		_, err := other.EndSessions(ctx, s.SID, "", clk.Now())
		return err == nil
	})
	eventually(t, "the replica started during the outage ends the session", func() bool { return late.Ended(s) })
}

// Without Redis, logouts are recorded in the process, within MaxLocal entries: the one
// that ends soonest goes first.
func TestLocalDenyListBounded(t *testing.T) {
	clk := newClock()
	d := session.NewLocalDenyList(session.DenyListOptions{Lifetime: denyLifetime, Now: clk.Now, MaxLocal: 2})
	var ss []*session.Session
	for i := range 3 {
		s := sampleSession(clk.Now(), 10, 10, 10)
		s.Expiry = clk.Now().Add(time.Duration(i+1) * time.Hour)
		ss = append(ss, s)
		if err := d.EndSession(ctx, s); err != nil {
			t.Fatalf("EndSession = %v", err)
		}
	}
	if n := d.Len(); n != 2 {
		t.Errorf("the local deny list holds %d entries, want at most 2", n)
	}
	if d.Ended(ss[0]) || !d.Ended(ss[1]) || !d.Ended(ss[2]) {
		t.Errorf("Ended = %v %v %v, want the soonest-ending entry dropped and the others kept", d.Ended(ss[0]), d.Ended(ss[1]), d.Ended(ss[2]))
	}
	clk.Advance(3 * time.Hour)
	if d.Ended(ss[2]) {
		t.Errorf("Ended after the session's expiry = true, want the entry lapsed")
	}
}

// An entry whose pub/sub message never arrived (written to Redis without publishing)
// takes effect at the next periodic reload.
func TestDenyListPeriodicReload(t *testing.T) {
	url := sessiontest.RedisURL(t)
	prefix := sessiontest.KeyPrefix(t, url)
	clk := newClock()
	tr := newTestRedis(t, url, prefix)
	reloads := make(chan error, 16)
	d := session.NewDenyList(tr.r, session.DenyListOptions{Lifetime: denyLifetime, Now: clk.Now,
		ReloadInterval: 10 * time.Millisecond,
		OnReload: func(err error) {
			select {
			case reloads <- err:
			default:
			}
		}})
	s := sampleSession(clk.Now(), 10, 10, 10)
	s.SID = "sid-dropped"
	// The entry as EndSessions writes it, without its message.
	member := "sid " + strconv.FormatInt(clk.Now().UnixMilli(), 10) + " sid-dropped"
	if err := tr.client.ZAdd(ctx, prefix+"deny", redis.Z{Score: float64(clk.Now().Add(denyLifetime).UnixMilli()), Member: member}).Err(); err != nil {
		t.Fatalf("ZADD: %v", err)
	}
	for len(reloads) > 0 {
		<-reloads
	}
	// A reload that began after the write: the second one to end from now.
	for range 2 {
		select {
		case err := <-reloads:
			if err != nil {
				t.Fatalf("reload = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no periodic reload of the deny list within 10 s")
		}
	}
	if !d.Ended(s) {
		t.Errorf("Ended after a periodic reload = false, want the entry whose message was dropped")
	}
}
