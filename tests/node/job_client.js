// A client of the job server in Node.js made from proto/ alone (the contracts and the vendored
// googleapis protos), with @grpc/grpc-js and @grpc/proto-loader: it gets a token with the
// client-credentials grant, submits a job, follows it over WatchJobs until it is done and reads
// it back with GetJob. Each step prints one JSON line; tests/test_node_client.py reads them.
//
//   PANDA_ISSUER=http://... PANDA_CLIENT_ID=... PANDA_CLIENT_SECRET=... PANDA_SERVER=host:port \
//   PANDA_QUEUE=local node tests/node/job_client.js
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { FINAL_STATES, clientCredentialsToken, print, setting } = require("./common");

const ROOT = path.resolve(__dirname, "..", "..");
function jobService(address) {
  const definition = protoLoader.loadSync("panda/server/v1/job_service.proto", {
    includeDirs: [path.join(ROOT, "proto"), path.join(ROOT, "third_party", "googleapis")],
    keepCase: true, // field names as in the contracts (job_id, not jobId)
    longs: String, // int64 as decimal strings: no precision lost
    enums: String, // enum values by name
    defaults: true,
  });
  const { JobService } = grpc.loadPackageDefinition(definition).panda.server.v1;
  return new JobService(address, grpc.credentials.createInsecure());
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30_000 }, (error, response) =>
      error ? reject(error) : resolve(response));
  });
}

// The job's state changes, from its first, until a final one.
function watchUntilDone(client, jobId, metadata) {
  return new Promise((resolve, reject) => {
    const call = client.WatchJobs({ job_ids: [jobId] }, metadata);
    let done = false;
    call.on("data", ({ event }) => {
      print("event", { job_id: event.job_id, state: event.state, previous_state: event.previous_state });
      if (!done && FINAL_STATES.has(event.state)) {
        done = true;
        call.cancel();
        resolve(event.state);
      }
    });
    call.on("error", (error) => {
      if (!done) reject(error);
    });
    call.on("end", () => {
      if (!done) reject(new Error("WatchJobs ended before the job was done"));
    });
  });
}

async function main() {
  const { token, tokenType } = await clientCredentialsToken(
    setting("PANDA_ISSUER"), setting("PANDA_CLIENT_ID"), setting("PANDA_CLIENT_SECRET"));
  print("token", { token_type: tokenType, length: token.length });

  const client = jobService(setting("PANDA_SERVER"));
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);

  const submitted = await unary(client, "SubmitJobs", {
    jobs: [{ queue: setting("PANDA_QUEUE"), command: ["/bin/sh", "-c", "echo hello from node"] }],
  }, metadata);
  const [job] = submitted.jobs;
  print("submitted", { job_id: job.job_id, state: job.state, owner: job.owner });

  await watchUntilDone(client, job.job_id, metadata);

  const { job: read } = await unary(client, "GetJob", { job_id: job.job_id }, metadata);
  print("job", { job_id: read.job_id, state: read.state, owner: read.owner, queue: read.queue,
                 command: read.command, history: read.history.map((change) => change.state) });
  client.close();
}

main().catch((error) => {
  print("error", { message: error.message, code: error.code });
  process.exitCode = 1;
});
