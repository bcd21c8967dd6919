// TEST-ONLY OpenID Connect provider for the end-to-end tests (oidc-provider, pinned by
// package-lock.json). One confidential client, the lab; the users are the `user` accounts of
// accounts.txt, who sign in with their (public, test-only) passwords on a plain login form
// and then confirm the consent form, as a browser would.
//
// Environment:
//   OIDC_ISSUER         the issuer, https://<address>:<port>, as the lab is configured with
//   OIDC_CLIENT_ID      the lab's client id
//   OIDC_CLIENT_SECRET  the client secret the provider holds for the lab
//   OIDC_REDIRECT_URIS  the lab's callback URLs, separated by spaces
//   OIDC_PORT           the HTTPS port (default 8443)
//   OIDC_TLS_DIR        folder with server.crt and server.key (default /run/oidc-peer)
//
// Each user's claims: sub "id-<uid>" (so a lab that took `sub` for the name would show it),
// preferred_username and name (scope profile), email (scope email), groups (scope groups).
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';

const here = dirname(fileURLToPath(import.meta.url));
const TLS_DIR = process.env.OIDC_TLS_DIR || '/run/oidc-peer';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`oidc peer: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const issuer = required('OIDC_ISSUER');
const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUris = required('OIDC_REDIRECT_URIS').split(/\s+/).filter(Boolean);
const port = Number(process.env.OIDC_PORT || 8443);

// --- the users (accounts.txt: kind name password uid groups peers) -------------------------
function loadUsers(path) {
  const users = new Map();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length !== 6 || fields[0] !== 'user') continue;
    const [, name, password, uid, groups] = fields;
    users.set(name, {
      name,
      password,
      sub: `id-${uid}`,
      groups: groups === '-' ? [] : groups.split(','),
    });
  }
  return users;
}

const users = loadUsers(join(here, 'accounts.txt'));
const bySub = new Map([...users.values()].map((user) => [user.sub, user]));

function samePassword(given, expected) {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

// --- the provider ---------------------------------------------------------------------------
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-1', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  async findAccount(ctx, sub) {
    const user = bySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: user.name,
          name: `${user.name[0].toUpperCase()}${user.name.slice(1)} (test user)`,
          email: `${user.name}@lab.test`,
          email_verified: true,
          groups: user.groups,
        };
      },
    };
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  jwks: { keys: [signingKey] },
});

for (const event of ['grant.error', 'authorization.error', 'server_error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => {
    const detail = error.error_detail ? ` (${error.error_detail})` : "";
    console.log(`oidc peer: ${event}: ${error.error || error.name}: ${error.error_description || error.message}${detail}`);
  });
}
provider.on('grant.success', (ctx) => {
  console.log(`oidc peer: grant.success for client ${ctx.oidc.client?.clientId}`);
});

// --- the interaction pages: a login form, then a consent form --------------------------------
const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

function loginPage(res, uid, status = 200, error = '') {
  const message = error ? `<p class="error">${escape(error)}</p>` : '';
  page(
    res,
    status,
    'Sign in to the test provider',
    `${message}<form method="post" action="/interaction/${escape(uid)}/login">` +
      '<label>Login <input name="login" autocomplete="username"></label>' +
      '<label>Password <input name="password" type="password" autocomplete="current-password"></label>' +
      '<button type="submit">Sign in</button></form>',
  );
}

function consentPage(res, uid, details) {
  const scopes = details.missingOIDCScope || [];
  page(
    res,
    200,
    'Allow the lab to read your profile?',
    `<p>Scopes: ${scopes.map(escape).join(' ')}</p>` +
      `<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Allow</button></form>`,
  );
}

async function form(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    page(res, 400, 'Unknown interaction', '');
    return;
  }
  const { prompt, params, session, grantId } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') loginPage(res, uid);
    else consentPage(res, uid, prompt.details);
    return;
  }
  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const submitted = await form(req);
    const user = users.get(submitted.get('login') || '');
    if (!user || !samePassword(submitted.get('password') || '', user.password)) {
      console.log(`oidc peer: login refused for ${JSON.stringify(submitted.get('login'))}`);
      loginPage(res, uid, 401, 'Invalid login or password.');
      return;
    }
    console.log(`oidc peer: ${user.name} signed in`);
    await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    return;
  }
  page(res, 400, `No ${action || 'page'} for the ${prompt.name} prompt`, '');
}

const callback = provider.callback();
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/;

const server = createServer(
  { cert: readFileSync(join(TLS_DIR, 'server.crt')), key: readFileSync(join(TLS_DIR, 'server.key')) },
  (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    const match = INTERACTION.exec(path);
    if (!match) {
      callback(req, res);
      return;
    }
    interaction(req, res, match[1], match[2]).catch((error) => {
      console.log(`oidc peer: interaction failed: ${error.message}`);
      if (!res.headersSent) page(res, 400, 'The sign-in could not go on', `<p>${escape(error.message)}</p>`);
    });
  },
);
server.listen(port, () => {
  console.log(`oidc peer: ${issuer} on port ${port}: ${users.size} users, client ${clientId} -> ${redirectUris.join(' ')}`);
});
