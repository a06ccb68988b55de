// An OpenID Connect provider separate from PanDA mesh, for the tests: oidc-provider (npm) on
// plain http on loopback, with one confidential robot client allowed the client_credentials
// grant. Its access tokens are RS256 JWTs (with a kid) for the audience the resource indicator
// names, carrying WLCG groups. Prints `READY <issuer>` once listening; stops on SIGTERM.
//
//   node tests/external_oidc/provider.mjs [port]
//
// Environment (all optional):
//   OIDC_PORT           port when not given as argument (default 0: any free one)
//   OIDC_CLIENT_ID      the robot's client id      (default "external-robot")
//   OIDC_CLIENT_SECRET  the robot's client secret  (default "external-robot-secret")
//   OIDC_AUDIENCE       default audience (default "panda-mesh")
//   OIDC_GROUPS         wlcg.groups of its tokens, comma separated (default "/panda")
//
// A token request names its audience with a resource indicator (RFC 8707), which must be an
// absolute URI: `urn:panda:audience:<aud>` gives a token whose `aud` is `<aud>`; with no
// `resource` parameter the token is for OIDC_AUDIENCE.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:net';

// oidc-provider 9 needs a recent Node.js (it uses URL.parse, in 20.18 and later; 22 LTS is
// what it supports): say so plainly rather than fail somewhere inside it.
if (typeof URL.parse !== 'function') {
  console.error(`oidc-provider needs Node.js 20.18 or later (22 LTS recommended); this is ${process.version}`);
  process.exit(2);
}
const { default: Provider, errors } = await import('oidc-provider');

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const clientId = process.env.OIDC_CLIENT_ID || 'external-robot';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'external-robot-secret';
const defaultAudience = process.env.OIDC_AUDIENCE || 'panda-mesh';
const groups = (process.env.OIDC_GROUPS ?? '/panda').split(',').map((g) => g.trim()).filter(Boolean);
const RESOURCE_PREFIX = 'urn:panda:audience:';
const TOKEN_SECONDS = 600;

// A fresh signing key for every run: nothing trusts it but what fetches its JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }), kid: `external-${Date.now().toString(36)}`, use: 'sig', alg: 'RS256',
};

function audienceOf(resource) {
  if (!resource.startsWith(RESOURCE_PREFIX) || resource.length === RESOURCE_PREFIX.length) return undefined;
  return decodeURIComponent(resource.slice(RESOURCE_PREFIX.length));
}

function configuration() {
  return {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signingKey] },
    // Not used by client_credentials, but set so nothing falls back to development defaults.
    cookies: { keys: ['external-oidc-test-cookie-key'] },
    features: {
      // No login pages: only robots (client_credentials) get tokens here.
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? `${RESOURCE_PREFIX}${defaultAudience}`,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const audience = audienceOf(resourceIndicator);
          if (audience === undefined) {
            throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
          }
          return {
            scope: '',
            audience,
            accessTokenTTL: TOKEN_SECONDS,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind === 'ClientCredentials' || token.kind === 'AccessToken') {
        return { 'wlcg.groups': groups };
      }
      return undefined;
    },
    ttl: {
      AccessToken: TOKEN_SECONDS,
      ClientCredentials: TOKEN_SECONDS,
    },
  };
}

// The issuer must name the port, so a free one is found first when none is given.
async function choosePort() {
  if (port) return port;
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const chosen = probe.address().port;
      probe.close(() => resolve(chosen));
    });
  });
}

const listenPort = await choosePort();
const issuer = `http://127.0.0.1:${listenPort}`;
const provider = new Provider(issuer, configuration());
provider.on('server_error', (_ctx, error) => console.error('server_error', error));
provider.on('grant.error', (_ctx, error) => console.error('grant.error', error.message, error.error_description ?? ''));

const server = provider.listen(listenPort, '127.0.0.1', () => {
  console.log(`READY ${issuer}`);
});
server.on('error', (error) => {
  console.error(`cannot listen on 127.0.0.1:${listenPort}: ${error.message}`);
  process.exit(1);
});

function stop(signal) {
  console.log(`stopping on ${signal}`);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
