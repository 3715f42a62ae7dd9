// Package testbench is the plumbing tokenhandler's harnesses share: child processes
// (started in a process group of their own, stopped with SIGTERM then SIGKILL), free
// loopback ports, readiness polling, a cookie jar that treats loopback as a browser
// does, signing in through a provider's HTML login form, the login and consent app Ory
// Hydra redirects to, Dex and oidc-provider configuration, and RS256 JWT signing.
//
// Its users are e2e/idptest (real providers for the integration tests), bench (the
// benchmark harness) and examples/stack (the demo on loopback). It is an ordinary
// package, not a test helper: functions take a context.Context where they do I/O and
// return errors; callers that are tests turn them into t.Fatal. It knows nothing of
// tokenhandler's endpoints or cookies, and it owns no product code.
package testbench
