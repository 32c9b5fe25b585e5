// A real OpenID Provider for crates/authn's tests: panva's `oidc-provider` (OpenID-certified,
// npm; installed by scripts/test into $PUGMARK_NPM/oidc-provider), configured like an INDIGO
// IAM as far as pugmark cares: JWT access tokens (RFC 9068) for a requested audience
// (resource indicators, RFC 8707) carrying `wlcg.groups` and `eduperson_entitlement`; id
// tokens with the same claims; authorization code + PKCE (S256, required) for the web client;
// client credentials for minting tokens in tests. Nothing here verifies anything: the
// provider is the peer, the Rust test is the subject.
//
// Usage: node oidc-provider.mjs PORT KEYS [ISSUER]
//   PORT    0 for any free port; the chosen one is printed as `ready PORT ISSUER` on stdout
//   KEYS    comma-separated kid:alg (RS256 or ES256), fresh key material each start: the first
//           key of an alg signs (restart with other kids = key rotation at the provider)
//   ISSUER  default http://127.0.0.1:PORT (another value: a provider that claims someone
//           else's issuer, i.e. a token signed by a key that issuer never published)
// Test users (login form with password): alice / alice-pw, bob / bob-pw.
// Clients: pugmark-web (secret web-secret, code flow, redirect http://127.0.0.1:9/callback and
//   $PUGMARK_OIDC_REDIRECT when set);
//   alice-cli, bob-cli, alice-es (ES256), alice-short (1 s tokens): client credentials,
//   secret cli-secret, tokens carry that user's claims.
import http from 'node:http';
import crypto from 'node:crypto';
import { parse as parseQs } from 'node:querystring';
import Provider from 'oidc-provider';

const [portArg, keysArg, issuerArg] = process.argv.slice(2);

const USERS = {
  alice: {
    password: 'alice-pw',
    claims: {
      name: 'Alice Atlas',
      preferred_username: 'alice',
      email: 'alice@example.org',
      'wlcg.groups': ['/atlas', '/atlas/pilots'],
      eduperson_entitlement: ['urn:mace:egi.eu:group:atlas:role=vm-operator#aai.egi.eu'],
    },
  },
  bob: {
    password: 'bob-pw',
    claims: {
      name: 'Bob CMS',
      preferred_username: 'bob',
      email: 'bob@example.org',
      // WLCG allows the space-separated string form.
      'wlcg.groups': '/cms /cms/pilots',
      groups: ['cms-admins'],
    },
  },
};
const CLI_USER = { 'alice-cli': 'alice', 'bob-cli': 'bob', 'alice-es': 'alice', 'alice-short': 'alice' };

// The key pair is generated as PEM and read back into a fresh KeyObject before the JWK
// export: Node 20 deadlocked (seen in CI, `gdb`: ExportJWK → a GC → ~KeyGenJob waiting for
// the key's own mutex, held by the export) when a key object still owned by its generation
// job was exported while a collection ran; the provider then never printed `ready`.
function makeKeys(spec) {
  const pem = { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } };
  return spec.split(',').map((s) => {
    const [kid, alg] = s.split(':');
    const { privateKey } = alg === 'ES256'
      ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256', ...pem })
      : crypto.generateKeyPairSync('rsa', { modulusLength: 2048, ...pem });
    return { ...crypto.createPrivateKey(privateKey).export({ format: 'jwk' }), kid, alg, use: 'sig' };
  });
}

const server = http.createServer();
server.listen(Number(portArg), '127.0.0.1', () => {
  const port = server.address().port;
  const issuer = issuerArg || `http://127.0.0.1:${port}`;
  const cliClient = (id, alg) => ({
    client_id: id,
    client_secret: 'cli-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    'urn:test:alg': alg,
  });
  const provider = new Provider(issuer, {
    jwks: { keys: makeKeys(keysArg) },
    clients: [
      {
        client_id: 'pugmark-web',
        client_secret: 'web-secret',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // PUGMARK_OIDC_REDIRECT: one more (the web UI's /ui/callback in crates/pugmark/tests/ui.rs).
        redirect_uris: ['http://127.0.0.1:9/callback', ...(process.env.PUGMARK_OIDC_REDIRECT ? [process.env.PUGMARK_OIDC_REDIRECT] : [])],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      cliClient('alice-cli', 'RS256'),
      cliClient('bob-cli', 'RS256'),
      cliClient('alice-es', 'ES256'),
      cliClient('alice-short', 'RS256'),
    ],
    extraClientMetadata: { properties: ['urn:test:alg'] },
    scopes: ['openid', 'profile', 'email', 'wlcg.groups', 'eduperson_entitlement'],
    claims: {
      profile: ['name', 'preferred_username'],
      email: ['email'],
      'wlcg.groups': ['wlcg.groups', 'groups'],
      eduperson_entitlement: ['eduperson_entitlement'],
    },
    // IAM puts the scope's claims (groups) into the id token too.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: ['oidc-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        getResourceServerInfo: async (_ctx, resource, client) => ({
          scope: 'openid',
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: client['urn:test:alg'] || 'RS256' } },
        }),
      },
    },
    ttl: {
      ClientCredentials: (_ctx, _token, client) => (client.clientId === 'alice-short' ? 1 : 600),
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 600,
      Grant: 600,
    },
    findAccount: async (_ctx, sub) => {
      const u = USERS[sub];
      if (!u) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...u.claims }) };
    },
    extraTokenClaims: async (_ctx, token) => {
      const user = USERS[CLI_USER[token.clientId]] || USERS[token.accountId];
      if (!user) return undefined;
      const { 'wlcg.groups': g, eduperson_entitlement: e, groups, name, preferred_username, email } = user.claims;
      return Object.fromEntries(Object.entries({
        'wlcg.groups': g, eduperson_entitlement: e, groups, name, preferred_username, email,
      }).filter(([, v]) => v !== undefined));
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  const oidc = provider.callback();

  const page = (res, body) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><body>${body}</body></html>`);
  };
  const readBody = (req) => new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => resolve(parseQs(b)));
  });

  // The login and consent pages: oidc-provider leaves these to the deployer (its
  // devInteractions accept any login without a password); these check the password.
  server.on('request', async (req, res) => {
    const m = req.url.match(/^\/interaction\/([\w-]+)(?:\/(login|confirm))?$/);
    if (!m) return oidc(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      const [, uid, action] = m;
      if (!action && details.prompt.name === 'login') {
        return page(res, `<form method="post" action="/interaction/${uid}/login">
<input name="login"><input type="password" name="password"><button>Sign in</button></form>`);
      }
      if (!action && details.prompt.name === 'consent') {
        return page(res, `<form method="post" action="/interaction/${uid}/confirm"><button>Allow</button></form>`);
      }
      if (action === 'login' && req.method === 'POST') {
        const body = await readBody(req);
        const u = USERS[body.login];
        if (!u || u.password !== body.password) {
          res.writeHead(403, { 'content-type': 'text/plain' });
          return res.end('wrong login or password');
        }
        return provider.interactionFinished(req, res, { login: { accountId: body.login } }, { mergeWithLastSubmission: false });
      }
      if (action === 'confirm' && req.method === 'POST') {
        const { prompt: { details: d }, grantId, session, params } = details;
        const grant = grantId
          ? await provider.Grant.find(grantId)
          : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
        if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
        if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
        if (d.missingResourceScopes) {
          for (const [indicator, scope] of Object.entries(d.missingResourceScopes)) {
            grant.addResourceScope(indicator, scope.join(' '));
          }
        }
        const consent = { grantId: await grant.save() };
        return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
      }
      res.writeHead(400);
      return res.end('bad interaction request');
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return res.end(String(err));
    }
  });
  console.log(`ready ${port} ${issuer}`);
});
