// TEST-ONLY readiness check of the OpenID provider peer, run inside its container: the
// discovery document over HTTPS, the certificate checked against the test CA
// (NODE_EXTRA_CA_CERTS=/etc/oidc-peer/ca.crt), naming the configured issuer.
const issuer = process.env.OIDC_ISSUER;
const response = await fetch(`${issuer}/.well-known/openid-configuration`);
const document = await response.json();
if (response.status !== 200 || document.issuer !== issuer) {
  console.log(`discovery answered ${response.status} with issuer ${JSON.stringify(document.issuer)}`);
  process.exit(1);
}
console.log(`ready: ${document.issuer}`);
