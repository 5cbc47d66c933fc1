// The embedding API: an Engine holds what is shared (weights, tokenizer,
// model config, sparsity plan); a Session holds one sequence's KV cache.
//
//   auto engine = tsa::Engine::load({.model_dir = "models/SmolLM2-135M-Instruct"});
//   tsa::Session session(engine);
//   auto prompt = engine->tokenizer().encode("The capital of France is");
//   auto result = session.generate(prompt, {.max_new_tokens = 32});
//
// Data path: load -> plan -> prefill -> decode. Errors are tsa::Error.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tsa/error.h"
#include "tsa/model_config.h"
#include "tsa/sparsity.h"
#include "tsa/tokenizer.h"

namespace tsa {

enum class Device { Cpu, Cuda };

// Tensor parallelism over `world` GPUs, one process (or thread) per rank:
// attention heads, the KV cache and the MLP split across ranks, partial
// outputs summed by NCCL (src/plan/tp_plan.h has the split). Every rank
// loads an Engine with the same options but its own rank, then drives its
// sessions through the same calls in the same order (the ranks meet in
// collectives inside each forward); every rank gets the full logits and the
// same sampled tokens.
struct TensorParallel {
  int world = 1;        // ranks; 1 = one GPU, no NCCL
  int rank = 0;         // in [0, world)
  int device = -1;      // CUDA device of this rank; -1 = rank (made current in Engine::load)
  std::string nccl_id;  // the group's id: new_nccl_id() on one rank, passed to the others
};

// A fresh NCCL unique id (an opaque 128-byte blob) for a TensorParallel
// group. Throws tsa::Error when this build has no CUDA backend.
std::string new_nccl_id();
// CUDA devices this process can see; 0 without a CUDA backend or driver.
int cuda_device_count();

struct EngineOptions {
  std::string model_dir;
  Device device = Device::Cpu;
  std::string sparsity_config;  // path of a sparsity JSON; empty = all layers dense
  int threads = 0;              // CPU threads for matmuls; 0 = all cores
  // Benchmarks only: read config.json alone and make random weights on the
  // GPU (Device::Cuda), for model shapes that do not exist on disk. The
  // tokenizer is loaded when the folder has one.
  bool random_weights = false;
  uint64_t random_seed = 1;
  // Benchmarks only: in [0, 1]; > 0 sets LayerSparsity::force_keep_fraction
  // on every sparse layer (a fixed share of the prefix kept, no budget).
  double force_keep_fraction = 0;
  // Device::Cuda only; see TensorParallel.
  TensorParallel tp;
};

struct SessionOptions {
  int64_t ctx_size = 0;       // KV-cache capacity in tokens; 0 = model's max_position_embeddings
  int64_t prefill_chunk = 0;  // prompt tokens per forward pass; 0 = backend default
  std::string dump_dir;       // debug: write named intermediates ("attn_out-3") as .npy here
  std::string dump_filter;    // only names containing this ("" = all)
  bool profile = false;       // per-layer timings (GPU) and drift (CPU); see Session::profile
  // CUDA backend: replay each single-token decode step as one CUDA graph
  // (captured at the second step) instead of launching its ~10 kernels per
  // layer one by one; same results bit for bit. Not with profile or tensor
  // parallelism, which launch eagerly. Ignored on the CPU.
  bool cuda_graphs = true;
};

// What the last forward call did: attention time per layer (selection
// included for sparse layers) when SessionOptions::profile is set on the
// CUDA backend, and the sparse-attention keep counts always.
struct ForwardProfile {
  std::vector<double> attention_ms;  // one entry per layer (CUDA backend with profile)
  double forward_ms = 0;             // the whole call (CUDA backend with profile)
  // Token Sparse Attention of the last forward, per layer (every backend):
  // prefix tokens each head kept, or -1 where the layer ran dense.
  std::vector<int64_t> tsa_keep;
  // Representation drift per layer (CPU backend with profile): mean over the
  // call's tokens of ||h_out - h_in|| / ||h_in||, h the residual stream before
  // and after the whole decoder layer (what tsa-profile ranks layers by).
  std::vector<double> layer_drift;
};

struct SamplingOptions {
  float temperature = 0.8f;      // 0 = greedy (argmax)
  int32_t top_k = 40;            // 0 = off
  float top_p = 0.95f;           // 1 = off
  float min_p = 0.05f;           // 0 = off
  float repeat_penalty = 1.0f;   // 1 = off; HF semantics (divide positive logits)
  int32_t repeat_last_n = 64;    // tokens the penalty looks back over; -1 = whole context
  std::optional<uint64_t> seed;  // unset = random
};

enum class StopReason { MaxTokens, Eos, StopString, Callback, ContextFull, Cancelled };
const char* stop_reason_name(StopReason r);

struct Timings {
  double load_ms = 0;     // engine load (weights, tokenizer)
  double prefill_ms = 0;  // prompt processing
  double ttft_ms = 0;     // prefill plus sampling of the first token
  double decode_ms = 0;   // all decode steps after the first token
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;  // over generated_tokens - 1 steps
};

struct GenerateOptions {
  int64_t max_new_tokens = 256;   // -1 = until EOS, a stop string or a full context
  std::vector<std::string> stop;  // stop strings (not included in the text)
  bool ignore_eos = false;
  SamplingOptions sampling;
  // Each generated token and the text it completes (empty while a UTF-8
  // character is still partial). Return false to stop generation. Text held
  // back until the end (an unfinished character) arrives with token -1.
  std::function<bool(int32_t token, std::string_view text)> on_token;
  // Prefill progress in prompt tokens; called at least at the end.
  std::function<void(int64_t done, int64_t total)> on_prefill_progress;
  // Polled between chunks and tokens; true stops with StopReason::Cancelled.
  const std::atomic<bool>* cancel = nullptr;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;  // generated ids (EOS and stop-string tokens included)
  std::string text;          // generated text, stop string removed
  StopReason stop_reason = StopReason::MaxTokens;
  uint64_t seed = 0;  // the seed actually used
  Timings timings;
};

class Engine {
 public:
  static std::shared_ptr<Engine> load(const EngineOptions& options);
  ~Engine();

  const ModelConfig& config() const;
  const Tokenizer& tokenizer() const;  // throws when the folder had none (random_weights)
  const SparsityPlan& sparsity() const;
  const EngineOptions& options() const;
  double load_ms() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Session {
 public:
  explicit Session(std::shared_ptr<const Engine> engine, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Appends `tokens` to the sequence and returns the logits of its last
  // `n_logits` tokens (n_logits x vocab_size floats, row i for token
  // tokens.size() - n_logits + i). `progress` supplies the progress callback
  // and cancel flag. The span stays valid until the next call on this session.
  std::span<const float> prefill(std::span<const int32_t> tokens, int64_t n_logits = 1,
                                 const GenerateOptions* progress = nullptr);
  // Appends one token; returns its logits.
  std::span<const float> decode(int32_t token);

  // Prefill the prompt, then sample until a stop condition. On the GPU the
  // decode steps' logits stay on the device (sampled there). An engine
  // without a tokenizer (random weights) returns ids and no text, and
  // refuses stop strings.
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options = {});

  // Benchmarks: pretend the first n_tokens positions are cached (random K/V
  // on the GPU), so decode speed at a long context can be measured without
  // a long prefill. Resets the sequence first.
  void fill_cache_random(int64_t n_tokens);
  const ForwardProfile& profile() const;

  int64_t n_past() const;    // tokens in the KV cache
  int64_t ctx_size() const;  // capacity
  // Prompt tokens per forward call: SessionOptions::prefill_chunk, or the
  // backend's choice (the GPU's: the whole context when its activations fit
  // the free memory, else the largest halving that does).
  int64_t prefill_chunk() const;
  void reset();  // empty the KV cache

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tsa
