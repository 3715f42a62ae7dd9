// Package idptest runs real OpenID providers, Ory Hydra v2.3.0, Dex and panva
// oidc-provider 9, for tokenhandler's integration tests, and drives their login pages
// without a browser.
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
// ./test.sh builds them from the tool modules under e2e/idp and exports both. For
// oidc-provider, need.EnvOIDCProvider names the directory holding its node_modules
// (scripts/idp-bin.sh oidc-provider), and the harness runs our provider script,
// e2e/idp/oidc-provider/provider.mjs, with the node on PATH. Without them a test that
// needs them is skipped, except under CI=true, where it fails (see internal/need). Processes, ports, the cookie jar, form filling and Hydra's login app
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
//   - Introspection: only Hydra has it, on its admin API (/admin/oauth2/introspect, no
//     client authentication), not in discovery. AdminIntrospectionURL puts a counting
//     proxy in front of it (IntrospectionCalls), for oidc.introspection_endpoint. A
//     refresh at Hydra ignores scope and revokes the access tokens issued before it.
//   - Only Hydra has a revocation_endpoint. Neither advertises
//     authorization_response_iss_parameter_supported or sends iss to the callback.
//   - RP-initiated logout ends the provider session (the next SignIn posts the form
//     again) but revokes no refresh token of this client at either. Both send a
//     back-channel logout token with iss, aud, iat, jti, events and sid; Dex's also has
//     exp and sub, Hydra's has neither.
//
// # oidc-provider: the peer for route tokens and sender-constrained tokens
//
// KindOIDCProvider is not in Kinds (the table of the product's older tests) but in
// AllKinds. What it adds, each proven by this package's tests with raw HTTP:
//
//   - Options.Resources: RFC 8707 resource servers (audience, scopes, jwt or opaque,
//     TTL). Ask for one with resource=Indicator and its scopes at the authorization
//     request; then a refresh-token grant with resource=Indicator returns an access
//     token for it (invalid_target for a resource not granted). Without resource the
//     access token is opaque, for userinfo. JWT access tokens have typ at+jwt, aud,
//     scope, client_id, and cnf.jkt when bound; oidc-provider refuses to introspect
//     them (400 unsupported_token_type): introspect opaque ones.
//   - Token exchange (RFC 8693, grant GrantTokenExchange, our strict grant in
//     provider.mjs): subject_token must be an active access token issued to the same
//     client, subject_token_type TokenTypeAccessToken; exactly one target,
//     resource=Indicator or audience=Audience of a Resource with Exchange; scope a
//     subset of the resource's (default: all of them). Errors: invalid_request (missing
//     or wrong parameters, actor tokens, another requested_token_type),
//     invalid_target, invalid_scope, invalid_grant (unknown, expired, revoked or
//     foreign subject; a DPoP-bound subject without a proof of its key). The token is
//     the resource's format and TTL, linked to the subject's grant, and DPoP-bound when
//     a proof came.
//   - Introspect and IntrospectJWT (RFC 9701, typ token-introspection+jwt, the answer
//     under the token_introspection claim), VerifyJWT and KeySet; the client is
//     registered with introspection_signed_response_alg RS256, so the product can ask
//     for JWT introspection responses too.
//   - DPoP (Options.DPoP, DPoPNonce): use_dpop_nonce with a DPoP-Nonce header, then a
//     retry with the nonce; a refresh keeps the binding; replayed proofs are refused.
//   - PAR (always offered; Options.PARRequired per client) and private_key_jwt
//     (Options.TokenEndpointAuthMethod with ClientJWKS; then ClientSecret is empty).
//     Client assertions are single-use (jti).
//   - Counters: GrantCalls, TokenExchangeCalls, PARCalls, IntrospectionCalls,
//     RevocationCalls, DPoPTokenCalls, SecretCalls, AuthorizationRequests.
//   - TestKey makes ES256 client assertions and DPoP proofs independently of the product.
//
// Its other behaviour: the login form takes the account id (Username "alice"), any
// password; no consent page (every requested scope is granted); refresh tokens are
// issued to the client without prompt=consent and outlive the provider session (RP
// logout keeps them, as at Hydra and Dex); a replayed refresh token or code revokes the
// whole grant, and one grant is shared by every login of one provider session and
// client: tests that replay or revoke use a fresh NewClient. The callback carries iss
// (RFC 9207). clockTolerance is 0. Restart makes a new signing key.
//
// The package owns no production code and is imported by tests only. It does not know
// tokenhandler's endpoints or cookies: callers pass the URLs.
package idptest
