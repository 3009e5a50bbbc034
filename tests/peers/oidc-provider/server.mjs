// Starts oidc-provider, a real OAuth2 / OpenID Connect authorization server, for the credential
// tests: client credentials, refresh tokens rotated on every use (a reused one is refused and
// revokes its grant), revocation (RFC 7009) and introspection (RFC 7662).
//
//   node server.mjs <path of the installed oidc-provider package> <port> <access token ttl secs>
//
// Clients (id:secret):
//   scim-client:scim-secret   confidential: client_credentials and refresh_token
//   public-client             public (no secret): refresh_token
//   resource-server:rs-secret the SCIM target's gatekeeper, which introspects tokens
//
// A refresh token normally comes from a person's consent in a browser. The one test-only route,
// POST /test/refresh-token?client_id=..., stands in for that consent: it records the grant the
// way the authorization endpoint would and returns a refresh token made by the provider itself.
// Everything the tests exercise after that (refresh, rotation, reuse detection, revocation) is
// the provider's own behaviour.
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [modulePath, portArg, ttlArg] = process.argv.slice(2);
const port = Number(portArg);
const accessTokenTtl = Number(ttlArg || 3600);
const { default: Provider } = await import(
  pathToFileURL(path.join(modulePath, 'lib', 'index.js')).href
);

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'scim-client',
      client_secret: 'scim-secret',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      redirect_uris: ['http://127.0.0.1/callback'],
      scope: 'openid offline_access scim',
    },
    {
      client_id: 'public-client',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris: ['http://127.0.0.1/callback'],
      scope: 'openid offline_access',
    },
    {
      client_id: 'resource-server',
      client_secret: 'rs-secret',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  scopes: ['openid', 'offline_access', 'scim'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/test/refresh-token') {
    const clientId = ctx.query.client_id;
    const client = await provider.Client.find(String(clientId));
    if (!client) {
      ctx.status = 400;
      ctx.body = { error: 'unknown client' };
      return;
    }
    const accountId = 'it-admin';
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    const refreshToken = new provider.RefreshToken({
      accountId,
      client,
      grantId,
      scope: 'openid offline_access',
      gty: 'authorization_code',
      authTime: Math.floor(Date.now() / 1000),
    });
    ctx.body = { refresh_token: await refreshToken.save() };
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
