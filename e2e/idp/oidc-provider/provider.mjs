// provider.mjs: panva oidc-provider as a real OpenID provider for tokenhandler's tests.
//
//   node provider.mjs CONFIG.json
//
// e2e/idptest writes CONFIG.json and runs this behind its counting front proxy, whose URL
// is the issuer (oidc-provider builds every endpoint URL from the request's Host, which
// the front keeps); examples/stack -fapi runs it directly for the FAPI 2.0 demo. Both
// write CONFIG.json through internal/testbench.OIDCProvider. The configuration:
//
//   modules    directory holding node_modules/oidc-provider (npm ci of package-lock.json,
//              cached outside the clone by scripts/idp-bin.sh oidc-provider)
//   issuer     the front proxy's URL
//   port       loopback port to listen on
//   ttl        seconds: accessToken, idToken, refreshToken
//   account    the one user: id (also the login at the form), email, name
//   clients    client metadata, as oidc-provider takes it
//   resources  RFC 8707 resource indicator -> {audience, scope, accessTokenFormat
//              ("jwt" | "opaque"), accessTokenTTL (seconds, 0: ttl.accessToken),
//              exchange (may be the target of token exchange)}
//   dpop       {enabled, requireNonce}: DPoP on, and proofs without a server nonce get
//              use_dpop_nonce
// and optionally (examples/stack's FAPI demo sets them; the harness does not):
//   signingAlg       the signing key's alg, for ID tokens and JWT access tokens: RS256
//                    (default) or PS256 (the same RSA key)
//   defaultResource  the resource indicator of a request that names none: its access
//                    tokens are for that resource (a JWT when its format says so), at
//                    the code and refresh grants too
//
// Test code only: it accepts any password for the known account, grants every requested
// scope without a consent page (as Hydra's skip_consent and Dex's skipApprovalScreen do),
// and issues refresh tokens to every client allowed the refresh_token grant.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The signing key is made on a worker thread while the modules load.
const keyPair = promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
const main = createRequire(join(cfg.modules, 'package.json')).resolve('oidc-provider');
const lib = dirname(main);
const load = (path) => import(pathToFileURL(path).href);
const { default: Provider, errors } = await load(main);
// Internal helpers for the token-exchange grant, which must check DPoP as the built-in
// grants do (the package has no exports map: deep imports are allowed).
const { default: validateDpop, checkDpopReplay } = await load(join(lib, 'helpers/validate_dpop.js'));

const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const resources = cfg.resources ?? {};
const signingAlg = cfg.signingAlg ?? 'RS256';

async function signingKey() {
  const { privateKey } = await keyPair;
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: signingAlg, use: 'sig' };
}

function resourceServer(indicator) {
  const r = resources[indicator];
  if (!r) throw new errors.InvalidTarget('unknown resource');
  return {
    audience: r.audience,
    scope: r.scope,
    accessTokenFormat: r.accessTokenFormat ?? 'opaque',
    accessTokenTTL: r.accessTokenTTL || cfg.ttl.accessToken,
    ...(r.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: signingAlg } } } : {}),
  };
}

// The logout confirmation: the default page's "Yes" is a button outside the form; here
// the form carries logout=yes itself, so posting it as it is ends the session.
function logoutSource(ctx, form) {
  const yes = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><button type="submit">Yes, sign me out</button></form>');
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html><head><title>Logout</title></head><body>${yes}</body></html>`;
}

// loadExistingGrant grants every requested OIDC scope and every requested scope of each
// requested resource, so no consent page is shown.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  const grant = (grantId && await oidc.provider.Grant.find(grantId))
    || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  const requested = [...oidc.requestParamScopes];
  grant.addOIDCScope(requested.filter((s) => OIDC_SCOPES.includes(s)).join(' '));
  for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {})) {
    const allowed = requested.filter((s) => rs.scopes.has(s));
    if (allowed.length) grant.addResourceScope(indicator, allowed.join(' '));
  }
  await grant.save();
  return grant;
}

const configuration = {
  clients: cfg.clients,
  jwks: { keys: [await signingKey()] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  clockTolerance: 0,
  // The ID token carries the profile and email claims too, as at Hydra and Dex.
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: OIDC_SCOPES,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
  async findAccount(_ctx, sub) {
    if (sub !== cfg.account.id) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub, email: cfg.account.email, email_verified: true, name: cfg.account.name, preferred_username: sub,
        };
      },
    };
  },
  loadExistingGrant,
  // Back-channel logout tokens go to the test's relying party on loopback, which the
  // provider's SSRF guard (a dispatcher that refuses special-use addresses) would stop.
  fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  // offline_access is dropped from a request without prompt=consent: issue refresh
  // tokens to every client allowed the grant instead, living beyond the session.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || cfg.ttl.accessToken,
    ClientCredentials: cfg.ttl.accessToken,
    IdToken: cfg.ttl.idToken,
    RefreshToken: cfg.ttl.refreshToken,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: cfg.ttl.refreshToken,
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
    introspection: { enabled: true, allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none' },
    jwtIntrospection: { enabled: true },
    rpInitiatedLogout: { enabled: true, logoutSource },
    backchannelLogout: { enabled: true },
    pushedAuthorizationRequests: { enabled: true },
    dPoP: { enabled: cfg.dpop?.enabled !== false, nonceSecret: randomBytes(32), requireNonce: () => Boolean(cfg.dpop?.requireNonce) },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => cfg.defaultResource,
      useGrantedResource: async () => Boolean(cfg.defaultResource),
      getResourceServerInfo: async (_ctx, indicator) => resourceServer(indicator),
    },
  },
};

const provider = new Provider(cfg.issuer, configuration);

// RFC 8693 token exchange, strict: the subject token must be an active access token of
// this provider issued to the calling client; the target (exactly one resource or
// audience) must be a resource marked exchange; the scope a subset of the resource's.
async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  const list = (v) => (v === undefined ? [] : [].concat(v));
  if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
  if (params.actor_token || params.actor_token_type) throw new errors.InvalidRequest('actor tokens are not supported');
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);

  const targets = [...list(params.resource), ...list(params.audience).map((aud) => Object.keys(resources).find((k) => resources[k].audience === aud) ?? `audience:${aud}`)];
  if (targets.length !== 1) throw new errors.InvalidTarget('exactly one resource or audience is required');
  const [indicator] = targets;
  if (!resources[indicator]?.exchange) throw new errors.InvalidTarget('the requested resource or audience is not allowed');
  const info = resourceServer(indicator);
  const allowed = new Set(info.scope.split(' '));
  const scopes = params.scope ? params.scope.split(' ') : [...allowed];
  if (!scopes.every((s) => allowed.has(s))) throw new errors.InvalidScope('requested scope exceeds what the resource allows');

  const subject = await provider.AccessToken.find(params.subject_token);
  if (!subject?.isValid || subject.clientId !== client.clientId) throw new errors.InvalidGrant('subject_token is not an active access token of this client');
  const dPoP = await validateDpop(provider, ctx);
  if (subject.jkt && dPoP?.thumbprint !== subject.jkt) throw new errors.InvalidGrant('subject_token is DPoP-bound: a proof with its key is required');
  if (client.dpopBoundAccessTokens && !dPoP) throw new errors.InvalidGrant('DPoP proof JWT not provided');

  const at = new provider.AccessToken({
    accountId: subject.accountId,
    client,
    grantId: subject.grantId,
    gty: 'token_exchange',
    sid: subject.sid,
    sessionUid: subject.sessionUid,
    expiresWithSession: subject.expiresWithSession,
    scope: scopes.join(' '),
  });
  at.resourceServer = new provider.ResourceServer(indicator, info);
  if (dPoP) {
    await checkDpopReplay(provider, ctx, dPoP, client.clientId, errors.InvalidGrant);
    at.setThumbprint('jkt', dPoP.thumbprint);
  }
  const value = await at.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: at.tokenType,
    expires_in: at.expiration,
    scope: at.scope,
  };
}
provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange,
  ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope'],
  ['resource', 'audience']);

// Errors only, never a token: the harness shows this output when a test fails.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'pushed_authorization_request.error', 'authorization.error', 'end_session.error', 'backchannel.error']) {
  provider.on(event, (...args) => {
    const err = args.find((a) => a instanceof Error);
    console.error(event, err?.name, err?.error ?? err?.message, err?.error_description ?? err?.cause?.message ?? '');
  });
}

provider.listen(cfg.port, '127.0.0.1', () => console.error(`oidc-provider ${cfg.issuer} listening on 127.0.0.1:${cfg.port}`));
