#include "tp_launch.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#ifdef TSA_HAVE_MPI
#include <mpi.h>
#endif

extern char** environ;

namespace tsa_tools {

namespace {

constexpr size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

std::string to_hex(const std::string& bytes) {
  std::string s;
  for (unsigned char c : bytes) s += fmt::format("{:02x}", c);
  return s;
}

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2 != 0) throw tsa::Error("TSA_TP_NCCL_ID is not a hex string");
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  char* end = nullptr;
  const long n = v ? std::strtol(v, &end, 10) : -1;
  if (!v || *v == '\0' || *end != '\0' || n < 0 || n > 1 << 20)
    throw tsa::Error(fmt::format("{} = '{}' is not a rank count or index", name, v ? v : ""));
  return static_cast<int>(n);
}

std::string program_name() {
  return program_invocation_short_name;
}

}  // namespace

TpLaunch::TpLaunch(int world, int argc, char** argv) {
  if (world < 1) throw tsa::Error(fmt::format("--tp {} must be at least 1", world));
  if (std::getenv("TSA_TP_RANK")) {  // a copy started by rank 0 below
    tp_.world = env_int("TSA_TP_WORLD");
    tp_.rank = env_int("TSA_TP_RANK");
    const char* id = std::getenv("TSA_TP_NCCL_ID");
    tp_.nccl_id = from_hex(id ? id : "");
    if (tp_.world != world || tp_.rank < 1 || tp_.rank >= world)
      throw tsa::Error(
          fmt::format("rank {} of {} started with --tp {}", tp_.rank, tp_.world, world));
    // Die with rank 0 (its error has already been said).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != env_int("TSA_TP_PARENT")) std::_Exit(1);
  } else if (std::getenv("OMPI_COMM_WORLD_SIZE") && env_int("OMPI_COMM_WORLD_SIZE") > 1) {
    const int n = env_int("OMPI_COMM_WORLD_SIZE");
    if (world != 1 && world != n)
      throw tsa::Error(fmt::format("--tp {}, but mpirun started {} ranks", world, n));
#ifdef TSA_HAVE_MPI
    MPI_Init(&argc, &argv);
    mpi_ = true;
    tp_.world = n;
    tp_.rank = env_int("OMPI_COMM_WORLD_RANK");
    tp_.device = env_int("OMPI_COMM_WORLD_LOCAL_RANK");
    std::string id(kNcclIdBytes, '\0');
    if (tp_.rank == 0) id = tsa::new_nccl_id();
    if (id.size() != kNcclIdBytes) throw tsa::Error("the NCCL id has an unexpected size");
    MPI_Bcast(id.data(), static_cast<int>(id.size()), MPI_BYTE, 0, MPI_COMM_WORLD);
    tp_.nccl_id = id;
#else
    throw tsa::Error(fmt::format(
        "started by mpirun with {} ranks, but {} was built without MPI: install Open MPI "
        "(libopenmpi-dev) and reconfigure, or use --tp N on one host",
        n, program_name()));
#endif
  } else if (world > 1) {
    const int gpus = tsa::cuda_device_count();
    if (gpus < world) {
      throw tsa::Error(
          fmt::format("--tp {} needs {} GPUs on this host, {} visible", world, world, gpus));
    }
    tp_.world = world;
    tp_.nccl_id = tsa::new_nccl_id();
    spawn(argc, argv);
  }
  if (!leader()) {
    // Results come from rank 0 alone.
    if (!std::freopen("/dev/null", "w", stdout))
      throw tsa::Error("cannot send this rank's stdout to /dev/null");
  }
}

void TpLaunch::spawn(int argc, char** argv) {
  // Environments prepared before fork: between fork and exec only
  // async-signal-safe calls.
  std::vector<std::vector<std::string>> envs(tp_.world);
  std::vector<std::vector<char*>> envps(tp_.world);
  for (int r = 1; r < tp_.world; ++r) {
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "TSA_TP_", 7) != 0) envs[r].push_back(*e);
    envs[r].push_back(fmt::format("TSA_TP_RANK={}", r));
    envs[r].push_back(fmt::format("TSA_TP_WORLD={}", tp_.world));
    envs[r].push_back("TSA_TP_NCCL_ID=" + to_hex(tp_.nccl_id));
    envs[r].push_back(fmt::format("TSA_TP_PARENT={}", getpid()));
    for (std::string& s : envs[r]) envps[r].push_back(s.data());
    envps[r].push_back(nullptr);
  }
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  for (int r = 1; r < tp_.world; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      stop_children();
      throw tsa::Error(fmt::format("cannot start rank {}: fork failed ({})", r, strerror(errno)));
    }
    if (pid == 0) {
      execve("/proc/self/exe", args.data(), envps[r].data());
      static const char msg[] = "tensor parallelism: exec of /proc/self/exe failed\n";
      (void)!write(2, msg, sizeof(msg) - 1);
      _exit(127);
    }
    children_.push_back(pid);
  }
  // One watcher per rank: the first to fail takes the group down, so no rank
  // waits forever in a collective its peer will never join.
  const std::string tool = program_name();
  for (size_t i = 0; i < children_.size(); ++i) {
    watchers_.emplace_back([this, i, tool] {
      int st = 0;
      while (waitpid(children_[i], &st, 0) < 0 && errno == EINTR) {
      }
      if (stopping_.load()) return;
      if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
      const std::string how = WIFEXITED(st)
                                  ? fmt::format("exit status {}", WEXITSTATUS(st))
                                  : fmt::format("signal {}", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
      std::fprintf(stderr, "%s: error: rank %zu failed (%s); stopping the other ranks\n",
                   tool.c_str(), i + 1, how.c_str());
      for (pid_t p : children_) kill(p, SIGTERM);
      std::fflush(stdout);
      std::_Exit(1);
    });
  }
}

void TpLaunch::stop_children() {
  stopping_ = true;
  for (pid_t p : children_) kill(p, SIGTERM);
}

std::string TpLaunch::error_prefix() const {
  return leader() ? "" : fmt::format("rank {}: ", tp_.rank);
}

int TpLaunch::finish(int status) {
  for (std::thread& t : watchers_) t.join();  // a failing rank _Exits the process first
  watchers_.clear();
  children_.clear();
#ifdef TSA_HAVE_MPI
  if (mpi_) {
    MPI_Finalize();
    mpi_ = false;
  }
#endif
  return status;
}

TpLaunch::~TpLaunch() {
  if (!watchers_.empty()) {  // rank 0 failed: the others would wait for it forever
    stop_children();
    for (std::thread& t : watchers_) t.join();
  }
#ifdef TSA_HAVE_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, 1);  // a rank failed: end the job
#endif
}

}  // namespace tsa_tools
