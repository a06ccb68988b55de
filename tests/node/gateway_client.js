// The same client as job_client.js over the HTTP/JSON gateway, with nothing but Node.js's own
// fetch: a token with the client-credentials grant, POST /v1/jobs:submit, GET /v1/jobs:watch
// (newline-delimited JSON) until the job is done, GET /v1/jobs/{job_id}. Each step prints one
// JSON line; tests/test_node_client.py reads them.
//
//   PANDA_ISSUER=http://... PANDA_CLIENT_ID=... PANDA_CLIENT_SECRET=... \
//   PANDA_GATEWAY_URL=http://host:port PANDA_QUEUE=local node tests/node/gateway_client.js
"use strict";

const { FINAL_STATES, clientCredentialsToken, print, setting } = require("./common");

async function call(base, token, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const answer = await response.json();
  if (!response.ok) throw Object.assign(new Error(`${method} ${path}: HTTP ${response.status}: ${answer.message}`),
                                        { code: answer.code });
  return answer;
}

// The job's state changes, from its first, until a final one: one JSON object per line.
async function watchUntilDone(base, token, jobId) {
  const response = await fetch(`${base}/v1/jobs:watch?job_ids=${jobId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`watch: HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of response.body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue; // a keepalive
      const message = JSON.parse(line);
      if (message.error) throw new Error(`watch ended: ${message.error.message}`);
      const { event } = message.result;
      print("event", { job_id: event.jobId, state: event.state, previous_state: event.previousState });
      // Leaving the loop cancels the body: the gateway ends the watch.
      if (FINAL_STATES.has(event.state)) return event.state;
    }
  }
  throw new Error("the watch ended before the job was done");
}

async function main() {
  const { token, tokenType } = await clientCredentialsToken(
    setting("PANDA_ISSUER"), setting("PANDA_CLIENT_ID"), setting("PANDA_CLIENT_SECRET"));
  print("token", { token_type: tokenType, length: token.length });
  const base = setting("PANDA_GATEWAY_URL").replace(/\/$/, "");

  const submitted = await call(base, token, "POST", "/v1/jobs:submit", {
    jobs: [{ queue: setting("PANDA_QUEUE"), command: ["/bin/sh", "-c", "echo hello from node"] }],
  });
  const [job] = submitted.jobs;
  print("submitted", { job_id: job.jobId, state: job.state, owner: job.owner });

  await watchUntilDone(base, token, job.jobId);

  const { job: read } = await call(base, token, "GET", `/v1/jobs/${job.jobId}`);
  print("job", { job_id: read.jobId, state: read.state, owner: read.owner, queue: read.queue,
                 command: read.command, history: read.history.map((change) => change.state) });
}

main().catch((error) => {
  print("error", { message: error.message, code: error.code });
  process.exitCode = 1;
});
