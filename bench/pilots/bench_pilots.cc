// Simulated pilots for bench/dispatch.py, in C++ so that the load they put on the benchmark's
// two cores is small beside the server's: the same protocol as the Python pilots in
// dispatch.py (Hello, RequestJobs, then per job RUNNING and FINISHED with the next request),
// one thread and one Connect stream per pilot, spread over channels of their own.
//
// Talks to its parent on stdin/stdout, one line each:
//   out "ready"                    every channel is connected
//   in  "go"                       the pilots start
//   out "progress F A T"           every 50 ms: finished acks, jobs assigned, time of the last ack
//                                  (CLOCK_MONOTONIC seconds, as Python's time.monotonic)
//   out "error MESSAGE"            a pilot failed (the parent stops the run)
//   in  "stop" (or end of input)   the pilots say goodbye; latencies go to --latencies (a line per
//                                  job: when asked, latency, in seconds), then "done"
// The pilots' bearer token, if the server checks tokens, is read from BENCH_PILOT_TOKEN.

#include <grpcpp/grpcpp.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "panda/server/v1/dispatch_service.grpc.pb.h"

extern char** environ;

namespace {

namespace pb = panda::server::v1;
using Stream = grpc::ClientReaderWriter<pb::ConnectRequest, pb::ConnectResponse>;

struct Options {
  std::string address;
  std::string token;
  std::string queue = "bench";
  std::vector<std::string> pilot_ids;
  std::string node = "bench-node";
  std::string mode = "protocol";
  std::string payload = "/bin/true";
  std::string latencies_path;
  int channels = 1;
  int slots = 1;
  int cores = 1;
  long memory_mb = 4000;
  long walltime_seconds = 2 * 86400;
  double hold_seconds = 0.0;
  bool wait_ack = false;
};

double monotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::mutex out_mutex;

void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(out_mutex);
  std::cout << line << '\n' << std::flush;
}

std::atomic<long> finished_count{0};
std::atomic<long> assigned_count{0};
std::atomic<double> last_ack_time{0.0};
std::atomic<bool> stopping{false};
std::atomic<bool> failed{false};

void SayProgress() {
  say("progress " + std::to_string(finished_count.load()) + " " + std::to_string(assigned_count.load()) + " " +
      std::to_string(last_ack_time.load()));
}

struct PilotError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Pilot {
 public:
  Pilot(const Options& options, pb::DispatchService::Stub* stub, std::string id)
      : options_(options), stub_(stub), id_(std::move(id)) {
    if (!options.token.empty()) context_.AddMetadata("authorization", "Bearer " + options.token);
  }

  void Run() {
    std::string error;
    try {
      Loop();
    } catch (const PilotError& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> lock(write_mutex_);
      closed_ = true;
      // Our own failure: end the call; when the server ended it, Finish gives its status.
      if (stream_ && !server_ended_) context_.TryCancel();
    }
    grpc::Status status = stream_ ? stream_->Finish() : grpc::Status::OK;
    if (stopping || failed.exchange(true)) return;  // the run is over, or another pilot reported
    if (!status.ok() && server_ended_) {
      error += ": " + std::to_string(status.error_code()) + " " + status.error_message();
    }
    say("error pilot " + id_ + ": " + error);
  }

  // From the main thread, once the run is over: the pilot leaves politely.
  void Leave() {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (!stream_ || closed_) return;
    pb::ConnectRequest goodbye;
    goodbye.mutable_goodbye()->set_reason("benchmark done");
    stream_->Write(goodbye);
    stream_->WritesDone();
  }

  // (when the pilot asked, how long the job took to come), in seconds.
  const std::vector<std::pair<double, double>>& latencies() const { return latencies_; }

 private:
  void Write(pb::ConnectRequest& request) {
    request.set_seq(++seq_);
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (!stream_->Write(request)) {
      server_ended_ = true;  // a write fails once the call is over: Finish tells why
      throw PilotError("the stream ended while writing");
    }
  }

  pb::ConnectResponse Read() {
    pb::ConnectResponse message;
    if (!stream_->Read(&message)) {
      server_ended_ = true;
      throw PilotError("the server ended the stream");
    }
    return message;
  }

  // Checks every acknowledgement a message carries; returns the seqs acknowledged.
  std::vector<uint64_t> TakeAcks(const pb::ConnectResponse& message) {
    std::vector<const pb::UpdateAck*> acks;
    if (message.has_update_acks())
      for (const auto& ack : message.update_acks().acks()) acks.push_back(&ack);
    if (message.has_job_assignments())
      for (const auto& ack : message.job_assignments().acks()) acks.push_back(&ack);
    std::vector<uint64_t> seqs;
    for (const auto* ack : acks) {
      if (ack->status().code() != 0 || ack->state() != pb::Job::STATE_FINISHED) {
        throw PilotError("update of job " + std::to_string(ack->job_id()) + " refused: code " +
                         std::to_string(ack->status().code()) + " '" + ack->status().message() +
                         "', state " + std::to_string(ack->state()));
      }
      finished_count.fetch_add(1, std::memory_order_relaxed);
      last_ack_time.store(monotonic(), std::memory_order_relaxed);
      seqs.push_back(ack->seq());
    }
    return seqs;
  }

  pb::ConnectRequest Updates(const std::vector<pb::Job>& jobs, pb::Job::State state, int exit_code,
                             bool then_request) {
    pb::ConnectRequest request;
    // One JobUpdates for every job reported at once (one, or several with slots), with the
    // next request when asked.
    auto* updates = request.mutable_job_updates();
    for (const auto& job : jobs) {
      auto* update = updates->add_updates();
      update->set_job_id(job.job_id());
      update->set_attempt(job.attempt());
      update->set_state(state);
      update->set_exit_code(exit_code);
    }
    if (then_request) updates->mutable_request_jobs()->set_count(options_.slots);
    return request;
  }

  int RunPayload() {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (int fd = 0; fd <= 2; ++fd) posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0);
    char* argv[] = {const_cast<char*>(options_.payload.c_str()), nullptr};
    pid_t pid = 0;
    int error = posix_spawn(&pid, options_.payload.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw PilotError("could not start " + options_.payload + ": " + std::strerror(error));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void Loop() {
    {
      std::lock_guard<std::mutex> lock(write_mutex_);
      stream_ = stub_->Connect(&context_);
    }
    pb::ConnectRequest hello;
    auto* h = hello.mutable_hello();
    h->set_pilot_id(id_);
    h->set_queue(options_.queue);
    h->set_node(options_.node);
    h->set_version("bench");
    h->mutable_resources()->set_cores(options_.cores);
    h->mutable_resources()->set_memory_mb(options_.memory_mb);
    h->mutable_resources()->set_walltime_seconds(options_.walltime_seconds);
    Write(hello);
    pb::ConnectResponse first = Read();
    if (!first.has_welcome()) throw PilotError("expected a welcome, got " + first.ShortDebugString());

    pb::ConnectRequest request;
    request.mutable_request_jobs()->set_count(options_.slots);
    double asked = monotonic();
    Write(request);
    std::vector<pb::Job> jobs;
    while (!stopping) {
      pb::ConnectResponse message;
      do {
        message = Read();
        TakeAcks(message);  // commands: none expected in the benchmark; ignored
      } while (!message.has_job_assignments());
      latencies_.push_back({asked, monotonic() - asked});
      const auto& assigned = message.job_assignments().jobs();
      if (assigned.empty() || assigned.size() > options_.slots) {
        throw PilotError("asked for " + std::to_string(options_.slots) + " job(s), got " +
                         std::to_string(assigned.size()));
      }
      jobs.assign(assigned.begin(), assigned.end());
      assigned_count.fetch_add(static_cast<long>(jobs.size()), std::memory_order_relaxed);
      pb::ConnectRequest running = Updates(jobs, pb::Job::STATE_RUNNING, 0, false);
      Write(running);
      int exit_code = 0;
      if (options_.hold_seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(options_.hold_seconds));
      if (options_.mode == "process") {
        for (size_t i = 0; i < jobs.size(); ++i) {
          exit_code = RunPayload();
          if (exit_code != 0)
            throw PilotError("payload " + options_.payload + " exited with " + std::to_string(exit_code));
        }
      }
      // As the pilot agent does: the final update carries the next request, unless the pilot
      // waits for the final's acknowledgement before asking (--wait-ack).
      if (!options_.wait_ack) {
        pb::ConnectRequest final_update = Updates(jobs, pb::Job::STATE_FINISHED, exit_code, true);
        asked = monotonic();
        Write(final_update);
        continue;
      }
      pb::ConnectRequest final_update = Updates(jobs, pb::Job::STATE_FINISHED, exit_code, false);
      Write(final_update);
      bool acknowledged = false;
      while (!acknowledged) {
        for (uint64_t seq : TakeAcks(Read())) acknowledged = acknowledged || seq == final_update.seq();
      }
      asked = monotonic();
      Write(request);
    }
  }

  const Options& options_;
  pb::DispatchService::Stub* stub_;
  std::string id_;
  grpc::ClientContext context_;
  std::unique_ptr<Stream> stream_;
  std::mutex write_mutex_;
  uint64_t seq_ = 0;
  bool closed_ = false;                    // under write_mutex_
  std::atomic<bool> server_ended_{false};
  std::vector<std::pair<double, double>> latencies_;
};

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    if (end == std::string::npos) end = text.size();
    if (end > start) parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  // The bearer token comes in the environment, out of sight of ps.
  if (const char* token = std::getenv("BENCH_PILOT_TOKEN")) options.token = token;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--wait-ack") {
      options.wait_ack = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "missing value for " << flag << '\n';
      std::exit(2);
    }
    std::string value = argv[++i];
    if (flag == "--address") options.address = value;
    else if (flag == "--queue") options.queue = value;
    else if (flag == "--pilot-ids") options.pilot_ids = Split(value, ',');
    else if (flag == "--node") options.node = value;
    else if (flag == "--mode") options.mode = value;
    else if (flag == "--payload") options.payload = value;
    else if (flag == "--latencies") options.latencies_path = value;
    else if (flag == "--channels") options.channels = std::stoi(value);
    else if (flag == "--slots") options.slots = std::stoi(value);
    else if (flag == "--cores") options.cores = std::stoi(value);
    else if (flag == "--memory-mb") options.memory_mb = std::stol(value);
    else if (flag == "--walltime-seconds") options.walltime_seconds = std::stol(value);
    else if (flag == "--hold-seconds") options.hold_seconds = std::stod(value);
    else {
      std::cerr << "unknown option " << flag << '\n';
      std::exit(2);
    }
  }
  if (options.address.empty() || options.latencies_path.empty() || options.pilot_ids.empty() || options.channels < 1 ||
      options.slots < 1 || (options.mode != "protocol" && options.mode != "process")) {
    std::cerr << "usage: bench_pilots --address HOST:PORT --latencies FILE --pilot-ids ID,ID... [--channels N] "
                 "[--mode protocol|process] ...\n";
    std::exit(2);
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<pb::DispatchService::Stub>> stubs;
  for (int i = 0; i < options.channels; ++i) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a TCP connection of its own
    channels.push_back(grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), arguments));
    stubs.push_back(pb::DispatchService::NewStub(channels.back()));
  }
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(30);
  for (auto& channel : channels) {
    if (!channel->WaitForConnected(deadline)) {
      say("error could not connect to " + options.address);
      return 1;
    }
  }
  say("ready");
  std::string line;
  while (std::getline(std::cin, line) && line != "go") {
  }

  std::vector<std::unique_ptr<Pilot>> pilots;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < options.pilot_ids.size(); ++i) {
    pilots.push_back(std::make_unique<Pilot>(options, stubs[i % stubs.size()].get(), options.pilot_ids[i]));
  }
  for (auto& pilot : pilots) threads.emplace_back([&pilot] { pilot->Run(); });
  std::thread reporter([] {
    while (!stopping) {
      SayProgress();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  while (std::getline(std::cin, line) && line != "stop") {
  }
  SayProgress();
  stopping = true;
  for (auto& pilot : pilots) pilot->Leave();
  for (auto& thread : threads) thread.join();
  reporter.join();

  std::ofstream out(options.latencies_path);
  out.precision(9);
  for (const auto& pilot : pilots)
    for (const auto& [asked, latency] : pilot->latencies()) out << asked << ' ' << latency << '\n';
  out.close();
  say("done");
  return failed ? 1 : 0;
}
