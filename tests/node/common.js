// What both Node.js clients share: their settings, their one-JSON-line-per-step output, and a
// token from the identity service with the client-credentials grant.
"use strict";

const FINAL_STATES = new Set(["STATE_FINISHED", "STATE_FAILED", "STATE_CANCELLED", "STATE_CLOSED"]);

function setting(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function print(step, fields) {
  console.log(JSON.stringify({ step, ...fields }));
}

// The client-credentials grant at the token endpoint the issuer's discovery document names.
async function clientCredentialsToken(issuer, clientId, clientSecret) {
  const discovery = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!discovery.ok) throw new Error(`discovery: HTTP ${discovery.status}`);
  const { token_endpoint: tokenEndpoint } = await discovery.json();
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString("base64");
  const response = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials" }),
  });
  if (!response.ok) throw new Error(`token: HTTP ${response.status}: ${await response.text()}`);
  const body = await response.json();
  return { token: body.access_token, tokenType: body.token_type };
}

module.exports = { FINAL_STATES, clientCredentialsToken, print, setting };
