// Package drill holds tokenhandler's operational drills, as tests: three replicas
// (real processes of the built binary) on one Redis, behind a small round-robin front
// with readiness checks, with several signed-in browsers calling an API route through
// rotating refreshes at a real provider (Ory Hydra, strict rotation) while
//
//   - each replica in turn leaves the front (a terminating pod's endpoint), is stopped
//     (SIGTERM, graceful drain, with a call in flight) and started again
//     (TestRollingRestart; TOKENHANDLER_DRILL_NO_PRESTOP=1 skips leaving the front
//     first), and
//   - the Redis master fails over under Sentinel (TestSentinelFailover).
//
// TestFailoverMidRefresh reproduces a known gap deterministically (a refresh whose
// result the dying master never passed on is replayed after the failover); it runs
// only with TOKENHANDLER_DRILL_KNOWN_BUGS=1.
//
// What they prove: no request fails and no session is signed out during a rolling
// restart, no refresh token is ever replayed (Hydra revokes the whole family when one
// is; every refresh call at the provider is accounted for by a new access token seen at
// the API), and a Redis failover costs at most a bounded window of 503
// session_store_unavailable answers, with nobody signed out.
//
// The drill is short by default (one rolling round, CI keeps it under two minutes);
// TOKENHANDLER_DRILL_ROUNDS=N runs N rounds of restarts and N failovers.
//
// Needs: the Hydra binary (TOKENHANDLER_TEST_HYDRA), redis-server
// (TOKENHANDLER_TEST_REDIS_BIN; ./test.sh exports both) and, for the failover,
// redis-sentinel on PATH (Debian's redis-sentinel package). Without them the tests
// skip, and fail under CI=true.
package drill
