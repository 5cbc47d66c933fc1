// Engine::load: model folder -> config, validated weights, tokenizer and
// sparsity plan. Nothing here runs the model.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "cpu/ops.h"
#include "engine/engine_impl.h"
#include "load/model_config_parse.h"
#include "model/runner.h"
#ifdef TSA_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_check.h"
#include "cuda/cuda_runner.h"
#include "cuda/cuda_weights.h"
#include "cuda/dist.h"
#endif

namespace tsa {

namespace fs = std::filesystem;

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelConfig& Engine::config() const {
  return impl_->config;
}
const Tokenizer& Engine::tokenizer() const {
  if (!impl_->tokenizer)
    throw Error(fmt::format("{}: no tokenizer was loaded", impl_->options.model_dir));
  return *impl_->tokenizer;
}
const SparsityPlan& Engine::sparsity() const {
  return impl_->sparsity;
}
const EngineOptions& Engine::options() const {
  return impl_->options;
}
double Engine::load_ms() const {
  return impl_->load_ms;
}

#ifndef TSA_HAVE_CUDA
std::string new_nccl_id() {
  throw Error("tensor parallelism: this build of tsa has no CUDA backend (nvcc was not found)");
}
int cuda_device_count() {
  return 0;
}
#endif

namespace {

void check_tensor_parallel(const EngineOptions& o) {
  const TensorParallel& tp = o.tp;
  if (tp.world < 1) throw Error(fmt::format("tensor parallelism: world size {} < 1", tp.world));
  if (tp.rank < 0 || tp.rank >= tp.world)
    throw Error(fmt::format("tensor parallelism: rank {} outside [0, {})", tp.rank, tp.world));
  if (tp.world == 1) return;
  if (o.device != Device::Cuda) throw Error("tensor parallelism needs --device cuda");
#ifdef TSA_HAVE_CUDA
  const int device = tp.device >= 0 ? tp.device : tp.rank;
  const int n = cuda_device_count();
  if (device >= n) {
    throw Error(
        fmt::format("tensor parallelism over {} GPUs: rank {} needs CUDA device {}, but {} visible",
                    tp.world, tp.rank, device, n == 1 ? "only 1 is" : fmt::format("{} are", n)));
  }
#endif
}

}  // namespace

std::shared_ptr<Engine> Engine::load(const EngineOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path dir = options.model_dir;
  std::error_code ec;
  if (options.model_dir.empty()) throw Error("no model folder given");
  if (!fs::is_directory(dir, ec))
    throw Error(fmt::format("model folder {} does not exist or is not a directory", dir.string()));
  if (options.threads < 0) throw Error(fmt::format("threads = {} must be >= 0", options.threads));
#ifdef TSA_HAVE_CUDA
  if (options.device == Device::Cuda) require_cuda_device();
#else
  if (options.device == Device::Cuda)
    throw Error("--device cuda: this build of tsa has no CUDA backend (nvcc was not found)");
#endif
  check_tensor_parallel(options);
#ifdef TSA_HAVE_CUDA
  // The rank's device, current for this thread from here on (weights,
  // communicator, and the sessions this thread makes).
  if (options.tp.world > 1) {
    const int device = options.tp.device >= 0 ? options.tp.device : options.tp.rank;
    cuda_check(cudaSetDevice(device), fmt::format("cudaSetDevice({})", device));
  }
#endif

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->config = load_model_config(dir.string());
  if (options.random_weights) {
    if (options.device != Device::Cuda) throw Error("random_weights needs --device cuda");
    if (fs::exists(dir / "tokenizer.json") || fs::exists(dir / "tokenizer.model"))
      impl->tokenizer = Tokenizer::load(dir.string());
  } else {
    impl->store = WeightStore::open_dir(dir.string());
    impl->weights = bind_weights(*impl->store, impl->config);
    impl->tokenizer = Tokenizer::load(dir.string());
  }
  if (impl->tokenizer && impl->tokenizer->vocab_size() > impl->config.vocab_size) {
    throw Error(fmt::format("{}: tokenizer has {} tokens but config.json vocab_size is {}",
                            dir.string(), impl->tokenizer->vocab_size(), impl->config.vocab_size));
  }
  // EOS ids: the union of config.json, generation_config.json and the tokenizer's.
  if (impl->tokenizer) {
    for (int32_t id : impl->tokenizer->eos_ids()) {
      auto& eos = impl->config.eos_token_ids;
      if (std::find(eos.begin(), eos.end(), id) == eos.end()) eos.push_back(id);
    }
  }
  impl->sparsity = options.sparsity_config.empty()
                       ? SparsityPlan::dense(impl->config.num_layers)
                       : SparsityPlan::from_file(options.sparsity_config, impl->config.num_layers);
  if (!(options.force_keep_fraction >= 0 && options.force_keep_fraction <= 1)) {
    throw Error(
        fmt::format("force_keep_fraction = {} must be in [0, 1]", options.force_keep_fraction));
  }
  for (LayerSparsity& l : impl->sparsity.layers) {
    if (l.sparse) l.force_keep_fraction = options.force_keep_fraction;
  }
#ifdef TSA_HAVE_CUDA
  if (options.device == Device::Cuda) {
    if (options.tp.world > 1) impl->tp_plan = plan_tensor_parallel(impl->config, options.tp.world);
    const RankPlan* rank = impl->rank();
    impl->cuda_weights = options.random_weights
                             ? CudaWeights::random(impl->config, options.random_seed, rank)
                             : CudaWeights::upload(impl->config, impl->weights, rank);
    // Joined once the weights are in place: a loading error (a missing file,
    // no memory) surfaces on its rank before any rank waits in NCCL.
    if (rank) impl->dist = std::make_shared<DistContext>(options.tp);
  }
#endif
  cpu::set_threads(options.threads);
  impl->load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return std::shared_ptr<Engine>(new Engine(std::move(impl)));
}

double Timings::prefill_tokens_per_s() const {
  return prefill_ms > 0 ? prompt_tokens * 1000.0 / prefill_ms : 0.0;
}

double Timings::decode_tokens_per_s() const {
  return decode_ms > 0 && generated_tokens > 1 ? (generated_tokens - 1) * 1000.0 / decode_ms : 0.0;
}

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::MaxTokens:
      return "max_tokens";
    case StopReason::Eos:
      return "eos";
    case StopReason::StopString:
      return "stop_string";
    case StopReason::Callback:
      return "callback";
    case StopReason::ContextFull:
      return "context_full";
    case StopReason::Cancelled:
      return "cancelled";
  }
  return "?";
}

std::unique_ptr<ModelRunner> make_runner(const Engine::Impl& engine,
                                         const SessionOptions& options) {
#ifdef TSA_HAVE_CUDA
  if (engine.options.device == Device::Cuda) return make_cuda_runner(engine, options);
#endif
  return make_cpu_runner(engine, options);
}

}  // namespace tsa
