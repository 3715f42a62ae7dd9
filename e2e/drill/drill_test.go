package drill

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRollingRestart stops each replica in turn (SIGTERM: it drains its in-flight
// requests) and starts it again, while every browser keeps calling the API through
// rotating refreshes. No call may fail, nobody may be signed out, and every refresh
// call at the provider must be accounted for by a new access token.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"redis", "cookie"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel() // the drills mostly wait for tokens to expire
			redis := startRedis(t, "redis")
			r := newRig(t, store, "redis://"+redis.addr())
			r.startLoad()
			r.rotateAll("before the restarts")
			n := rounds(t)
			var drains []string
			for round := range n {
				for _, rep := range r.replicas {
					// As Kubernetes does with the chart's preStop delay: the endpoint
					// leaves the load balancer first, then SIGTERM; one call is still in
					// flight at the replica and must be answered. Without the preStop
					// step (TOKENHANDLER_DRILL_NO_PRESTOP=1) the front only learns from
					// /readyz and refused connections, and a connection that reached the
					// closing listener's backlog can be reset: tokenhandler has no
					// lame-duck period in which /readyz fails before the listener closes.
					if os.Getenv("TOKENHANDLER_DRILL_NO_PRESTOP") != "1" {
						r.front.drain(rep.name)
					}
					slow := r.slowCallTo(rep)
					began := time.Now()
					if err := rep.stop(); err != nil {
						t.Fatalf("drill: round %d: %v", round+1, err)
					}
					if err := <-slow; err != nil {
						t.Errorf("drill: round %d: the call in flight at %s's SIGTERM: %v", round+1, rep.name, err)
					}
					drains = append(drains, fmt.Sprintf("%s %v", rep.name, time.Since(began).Round(time.Millisecond)))
					r.rotateAll(fmt.Sprintf("round %d, %s down", round+1, rep.name))
					if err := rep.start(t.Context()); err != nil {
						t.Fatalf("drill: round %d: %v", round+1, err)
					}
					r.front.undrain(rep.name)
					r.waitFrontSees(rep.name+" back", func(b *backend) bool { return b.name != rep.name || b.ready.Load() })
					r.rotateAll(fmt.Sprintf("round %d, %s back", round+1, rep.name))
				}
			}
			r.endLoad()
			if f := r.stats.failures(); len(f) > 0 {
				t.Errorf("drill: calls failed during the rolling restart: %s; first ones: %s; the front's transport errors: %q",
					r.stats, strings.Join(r.stats.samples, "; "), r.front.errors())
			}
			refreshes, tokens := r.finalChecks(true)
			t.Logf("drill (store=%s): %d rolling round(s) of %d replicas, %d browsers x %d tabs: %s; "+
				"%d refresh calls at the provider, %d new access tokens at the API; "+
				"provider 5xx: %d; front: %d calls moved on after a refused connection, %d sent with no replica ready; SIGTERM to exit: %s",
				store, n, replicaCount, browserCount, tabsPerBrowser, r.stats, refreshes, tokens, r.tokenLane.serverErrors.Load(),
				r.front.refusedRetries.Load(), r.front.panicked.Load(), strings.Join(drains, ", "))
		})
	}
}

// TestSentinelFailover crashes the Redis master under Sentinel while every browser
// keeps calling the API. Calls may get 503 session_store_unavailable until Sentinel has
// promoted the replica and the replicas have followed (the window is measured and
// logged); no other failure is allowed, and nobody is signed out.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"redis", "cookie"} {
		t.Run("store="+store, func(t *testing.T) {
			t.Parallel()
			failover(t, store)
		})
	}
}

func failover(t *testing.T, store string) {
	set := startSentinels(t)
	r := newRig(t, store, set.url())
	r.startLoad()
	r.rotateAll("before the failover")
	n := rounds(t)
	var windows []string
	for round := range n {
		old := set.masterPort()
		r.stats.resetWindow()
		// The crash comes at a moment with no call in flight and once the replica has
		// every write of the master; calls resume at once and meet the dead master. A
		// crash between the provider's answer to a refresh and the replica's write to
		// Redis, or a write lost to asynchronous replication, loses the rotated refresh
		// token, which is then replayed: TestFailoverMidRefresh, a known bug.
		r.front.gate.Lock()
		set.waitReplicated(old)
		crashed := time.Now()
		set.crashMaster(old)
		r.front.gate.Unlock()
		set.waitFor("a new master", func(port int) bool {
			m := set.masterPortAt(port)
			return m != "" && m != old
		})
		promoted := time.Since(crashed)
		r.rotateAll(fmt.Sprintf("failover %d", round+1))
		first, last, count := r.stats.window()
		w := fmt.Sprintf("failover %d: Sentinel promoted the replica %v after the crash; ", round+1, promoted.Round(time.Millisecond))
		if count == 0 {
			w += "no call failed"
		} else {
			w += fmt.Sprintf("%d calls failed, from %v to %v after the crash",
				count, first.Sub(crashed).Round(time.Millisecond), last.Sub(crashed).Round(time.Millisecond))
		}
		windows = append(windows, w)
		// The crashed master comes back; Sentinel makes it a replica of the new master,
		// ready for the next round.
		if round+1 < n {
			set.restartOldMaster(old)
		}
	}
	r.rotateAll("after the failovers")
	r.endLoad()
	for kind, count := range r.stats.failures() {
		if kind != "503 session_store_unavailable" {
			t.Errorf("drill: %d calls failed with %s; only 503 session_store_unavailable is allowed during a failover (%s); the front's transport errors: %q",
				count, kind, strings.Join(r.stats.samples, "; "), r.front.errors())
		}
	}
	// A refresh whose result could not be saved while Redis failed over is not seen
	// at the API: the accounting is not strict here; the final refresh still proves
	// no refresh token was replayed.
	refreshes, tokens := r.finalChecks(false)
	t.Logf("drill (Sentinel, store=%s): %s; %s; %d refresh calls at the provider, %d new access tokens at the API; "+
		"provider 5xx: %d; front: %d calls sent with no replica ready (every /readyz failed), %d moved on after a refused connection",
		store, strings.Join(windows, "; "), r.stats, refreshes, tokens, r.tokenLane.serverErrors.Load(),
		r.front.panicked.Load(), r.front.refusedRetries.Load())
}

// TestFailoverMidRefresh is the failover drill's worst moment, made deterministic: the
// Redis master dies while a refresh is in flight, after the provider has rotated the
// refresh token and before the replica has written the result to Redis. The session
// must survive (503 session_store_unavailable meanwhile is fine); a replay of the spent
// refresh token would make Hydra revoke the family and sign the user out.
//
// It fails today (store=redis): the rotated tokens live only in the replica that asked
// (its in-process grace entry); Redis still holds the spent refresh token, and the next
// call that lands on another replica after the failover spends it again: 401
// session_expired. The holder now retries its write every 100 ms until Redis answers
// (session's TestSharedRefreshResultStoredWhenRedisReturns), which saves an outage
// shorter than the lock's lease; a Sentinel failover takes 2-4 s, longer than the 3 s
// lease, and the other replicas, which reach the new master as soon as the holder does,
// take the lapsed lock first. Known bug, reported; it runs with
// TOKENHANDLER_DRILL_KNOWN_BUGS=1.
func TestFailoverMidRefresh(t *testing.T) {
	if os.Getenv("TOKENHANDLER_DRILL_KNOWN_BUGS") != "1" {
		t.Skip("known bug (a refresh in flight when the Redis master dies is lost, then replayed): set TOKENHANDLER_DRILL_KNOWN_BUGS=1 to run it")
	}
	t.Parallel()
	set := startSentinels(t)
	r := newRig(t, "redis", set.url())
	b := r.browsers[0]
	held := r.tokenLane.holdNextRefresh()
	// Call until a call needs a refresh: its answer is then held at the lane.
	var holding atomic.Bool
	calls := make(chan struct{})
	go func() {
		defer close(calls)
		for !holding.Load() && t.Context().Err() == nil {
			if code, _ := r.call(b); code != http.StatusOK {
				return
			}
			time.Sleep(pace) // pacing the calls, not waiting for an event
		}
	}()
	var release chan struct{}
	select {
	case release = <-held:
		holding.Store(true)
	case <-time.After(rotateTimeout):
		t.Fatal("drill: no refresh within the access token's lifetime")
	}
	// The provider has rotated the refresh token; the master dies before the replica
	// hears of it, and the replica's writes of the result fail.
	old := set.masterPort()
	set.crashMaster(old)
	close(release)
	<-calls
	set.waitFor("a new master", func(port int) bool {
		m := set.masterPortAt(port)
		return m != "" && m != old
	})
	// The browser goes on; the front spreads its calls over every replica.
	deadline := time.Now().Add(rotateTimeout)
	ok := 0
	for ok < 2*replicaCount && time.Now().Before(deadline) {
		code, msg := r.call(b)
		switch code {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("drill: after a failover mid-refresh: %d %s (want 200, or 503 while Redis fails over)", code, msg)
		}
		time.Sleep(pace)
	}
	if ok < 2*replicaCount {
		t.Fatalf("drill: the session did not work again within %v of the failover", rotateTimeout)
	}
}
