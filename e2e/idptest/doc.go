// Package idptest runs real OpenID providers, Ory Hydra v2.3.0 and Dex, for
// tokenhandler's integration tests, and drives their login pages without a browser.
//
// Start launches one provider process per test (in-memory storage, one confidential
// client, one demo user) behind a front reverse proxy whose URL is the issuer, so a
// test can count and delay token-endpoint calls, take the provider "down" and restart
// it behind the same URL. The processes are stopped at t.Cleanup, even when the test
// fails. NewClient, SignIn and Authorize sign the demo user in through the provider's
// real login form with a plain http.Client, checking every Set-Cookie on the way
// against the cookie prefix rules a browser enforces.
//
// The provider binaries come from the environment (EnvHydra, EnvDex): ./test.sh builds
// them from the tool modules under e2e/idp and exports both. Without them a test that
// needs them is skipped, except under CI=true, where it fails (see Need).
//
// The package owns no production code and is imported by tests only. It does not know
// tokenhandler's endpoints or cookies: callers pass the URLs.
package idptest
