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
// The provider binaries come from the environment (need.EnvHydra, need.EnvDex):
// ./test.sh builds them from the tool modules under e2e/idp and exports both. Without
// them a test that needs them is skipped, except under CI=true, where it fails (see
// internal/need). Processes, ports, the cookie jar, form filling and Hydra's login app
// come from internal/testbench, which bench and examples/stack share.
//
// # How the two providers differ
//
// Both are self-tested in this package (TestProviders); what tokenhandler's tests most
// often trip over:
//
//   - A spent refresh token: Hydra answers 400 invalid_grant and revokes the whole
//     family, the newest token included; Dex answers 400 invalid_request and the newest
//     token stays valid. A forgotten grant (after Restart) gets the same answers.
//   - Dex keeps one refresh token per user and client: a second login of the demo user
//     revokes the refresh token of the first: two sessions of one user cannot both
//     refresh at Dex, so a test that needs them runs against Hydra only.
//   - Hydra wants state and nonce of 8 characters or more (insufficient_entropy), and
//     checks a missing code_challenge only after login and consent; Dex refuses at once.
//     Both redirect to the callback with error=invalid_request.
//   - ID tokens: both carry sub, name, email, email_verified, sid, nonce, at_hash; Dex
//     adds preferred_username and c_hash, Hydra rat. Hydra's aud is an array, Dex's a
//     string. Hydra's ID tokens live 1 h whatever AccessTokenTTL says; Dex's live
//     AccessTokenTTL. expires_in is rounded down (a 2 s TTL can say 1).
//   - Access tokens: Hydra's are RS256 JWTs with "aud": [] and scp, or opaque ory_at_...
//     with OpaqueAccessTokens; Dex's are RS256 JWTs with the ID token's claims.
//   - Userinfo with an expired access token: Hydra 401, Dex 403.
//   - Only Hydra has a revocation_endpoint. Neither advertises
//     authorization_response_iss_parameter_supported or sends iss to the callback.
//   - RP-initiated logout ends the provider session (the next SignIn posts the form
//     again) but revokes no refresh token of this client at either. Both send a
//     back-channel logout token with iss, aud, iat, jti, events and sid; Dex's also has
//     exp and sub, Hydra's has neither.
//
// The package owns no production code and is imported by tests only. It does not know
// tokenhandler's endpoints or cookies: callers pass the URLs.
package idptest
