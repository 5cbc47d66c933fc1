// tsa-bench: prefill (time to first token, tokens/s, attention TFLOP/s per
// layer) and decode (tokens/s, bandwidth) of a model on the GPU.
//
//   tsa-bench -m bench/shapes/llama-3.1-8b --random --prefill 8192,32768,131072 \
//             --decode-ctx 1024,32768,131072 --json out.json
//
// --random makes the weights on the GPU from config.json alone; prompt ids
// are random. Decode at a context C fills the KV cache with random values
// instead of prefilling C tokens. With --config, sparse layers run Token
// Sparse Attention; --force-keep F makes each of them keep the fraction F of
// the prefix instead of the coverage budget (the paper's operating points,
// e.g. 0.456 and 0.326 at 128K; EngineOptions::force_keep_fraction).
// --batch N adds a batched decode table: N sequences (tsa::Batch, paged KV
// cache) each prefilled with C random tokens, then decoding together; tokens/s
// summed over the batch.
// --tp N runs one process per GPU (tools/tp_launch.h); rank 0 reports, and
// decode bytes and GB/s are per GPU (weights and KV cache split N ways).
// --no-cuda-graphs launches each single-sequence decode step's kernels one
// by one instead of replaying a CUDA graph (SessionOptions::cuda_graphs), for
// an A/B of the decode table in two runs (the prefill table's Session
// profiles, so it never uses graphs; tsa::Batch's steps are not graphed).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tp_launch.h"
#include "tsa/tsa.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tsa-bench: prefill and decode speed"};
  std::string model_dir, config, json_path, device = "cuda";
  std::vector<int64_t> prefill = {8192, 32768, 65536, 131072};
  std::vector<int64_t> decode_ctx = {1024, 32768, 131072};
  int64_t decode_steps = 64;
  int64_t batch = 0;
  double force_keep = 0;
  bool random = false, no_cuda_graphs = false;
  int tp = 1;
  app.add_option("-m,--model", model_dir, "Model folder (config.json; weights unless --random)")
      ->required();
  app.add_flag("--random", random, "Random weights made on the GPU (no safetensors needed)");
  app.add_option("--prefill", prefill, "Prompt lengths")->delimiter(',')->capture_default_str();
  app.add_option("--decode-ctx", decode_ctx, "Contexts for decode timing (0 = no decode)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--decode-steps", decode_steps, "Decode steps per context")->capture_default_str();
  app.add_option("--batch", batch,
                 "Also time batched decode of N sequences at each --decode-ctx (0 = off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--config", config, "Sparsity config (default dense)");
  app.add_option("--force-keep", force_keep,
                 "Benchmarks: sparse layers keep this fraction of the prefix (0 = coverage budget)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--device", device, "cuda or cpu")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--json", json_path, "Write results as JSON ('-' = stdout)");
  app.add_option("--tp", tp, "Tensor parallelism over N GPUs of this host, one process each")
      ->check(CLI::PositiveNumber);
  app.add_flag(
      "--no-cuda-graphs", no_cuda_graphs,
      "Decode table: launch each step's kernels one by one (default: replay a CUDA graph)");
  CLI11_PARSE(app, argc, argv);

  std::optional<tsa_tools::TpLaunch> launch;  // outlives the error message below
  try {
    if (tp > 1 && device != "cuda") throw tsa::Error("--tp needs --device cuda");
    launch.emplace(tp, argc, argv);
    const int world = launch->tp().world;
    tsa::EngineOptions eo;
    eo.model_dir = model_dir;
    eo.device = device == "cuda" ? tsa::Device::Cuda : tsa::Device::Cpu;
    eo.sparsity_config = config;
    eo.random_weights = random;
    eo.force_keep_fraction = force_keep;
    eo.tp = launch->tp();
    if (force_keep > 0 && config.empty())
      throw tsa::Error("--force-keep needs --config (which layers are sparse)");
    auto engine = tsa::Engine::load(eo);
    const tsa::ModelConfig& cfg = engine->config();
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(cfg.vocab_size) - 1);
    auto random_ids = [&](int64_t n) {
      std::vector<int32_t> ids(n);
      for (auto& t : ids) t = tok(rng);
      return ids;
    };
    nlohmann::json j = {{"model", model_dir},
                        {"random_weights", random},
                        {"config", config.empty() ? "dense" : config},
                        {"force_keep", force_keep},
                        {"tp", world},
                        {"cuda_graphs", !no_cuda_graphs},
                        {"load_ms", engine->load_ms()}};
    std::printf(
        "# tsa-bench: %s (%s%s%s%s), %lld layers, heads %lld/%lld, head_dim %lld, load %.0f ms\n\n",
        model_dir.c_str(), config.empty() ? "dense" : config.c_str(),
        force_keep > 0 ? fmt::format(", keep {}", force_keep).c_str() : "",
        world > 1 ? fmt::format(", TP {}", world).c_str() : "",
        no_cuda_graphs ? ", no CUDA graphs" : "", static_cast<long long>(cfg.num_layers),
        static_cast<long long>(cfg.num_heads), static_cast<long long>(cfg.num_kv_heads),
        static_cast<long long>(cfg.head_dim), engine->load_ms());

    std::erase_if(prefill, [](int64_t len) { return len <= 0; });  // --prefill 0: decode only
    if (!prefill.empty()) {
      // Each prompt is followed by kAfter decode steps, inside the model's context.
      constexpr int64_t kAfter = 8;
      for (int64_t& len : prefill) len = std::min(len, cfg.max_position_embeddings - kAfter);
      const int64_t max_len = *std::max_element(prefill.begin(), prefill.end());
      tsa::Session s(engine, {.ctx_size = max_len + kAfter, .profile = true});
      s.prefill(random_ids(std::min<int64_t>(4096, max_len)));  // warm-up: handles, GEMM plans
      std::printf(
          "| prompt | TTFT ms | prefill tok/s | attention ms (all layers) | attention "
          "TFLOP/s per layer | attention share | TSA layers | mean keep | then "
          "decode tok/s |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
      for (int64_t len : prefill) {
        s.reset();
        const auto ids = random_ids(len);
        const auto t0 = Clock::now();
        int32_t t = argmax(s.prefill(ids));
        const double ttft = ms_since(t0);
        const tsa::ForwardProfile prof = s.profile();
        const auto t1 = Clock::now();
        for (int64_t i = 0; i < kAfter; ++i) t = argmax(s.decode(t));
        const double after_tps = kAfter / ms_since(t1) * 1e3;
        const double attn_ms =
            std::accumulate(prof.attention_ms.begin(), prof.attention_ms.end(), 0.0);
        // Causal attention FLOPs of one layer on one GPU (its heads): QK^T
        // and PV over the lower triangle.
        const double flops =
            4.0 * double(len) * double(len) / 2 * cfg.head_dim * (cfg.num_heads / world);
        const double per_layer_ms = attn_ms / cfg.num_layers;
        const double tflops = flops / (per_layer_ms * 1e-3) / 1e12;
        // Sparse layers of this prefill and the share of the prefix they kept.
        int64_t n_sparse = 0;
        double kept = 0;
        for (int64_t l = 0; l < cfg.num_layers; ++l) {
          const int64_t keep =
              l < static_cast<int64_t>(prof.tsa_keep.size()) ? prof.tsa_keep[l] : -1;
          if (keep < 0) continue;
          const int64_t prefix = len - engine->sparsity().layers[l].window;
          kept += prefix > 0 ? double(keep) / double(prefix) : 1.0;
          ++n_sparse;
        }
        std::printf("| %lld | %.1f | %.0f | %.1f | %.1f | %.0f%% | %lld | %.3f | %.1f |\n",
                    static_cast<long long>(len), ttft, len / ttft * 1e3, attn_ms, tflops,
                    100 * attn_ms / prof.forward_ms, static_cast<long long>(n_sparse),
                    n_sparse ? kept / n_sparse : 1.0, after_tps);
        std::fflush(stdout);
        j["prefill"].push_back({{"tokens", len},
                                {"ttft_ms", ttft},
                                {"tokens_per_s", len / ttft * 1e3},
                                {"forward_ms", prof.forward_ms},
                                {"attention_ms", prof.attention_ms},
                                {"attention_tflops_per_layer", tflops},
                                {"tsa_keep", prof.tsa_keep},
                                {"decode_after_tokens_per_s", after_tps}});
      }
      std::printf("\n");
    }

    std::erase_if(decode_ctx, [](int64_t c) { return c <= 0; });
    // The user's decode loop, for one sequence and for the batch:
    // generate(), greedy, sampled on the device (the logits stay there),
    // decode_steps + 1 tokens after a filled cache.
    tsa::GenerateOptions g;
    g.max_new_tokens = decode_steps + 1;
    g.ignore_eos = true;
    g.sampling.temperature = 0.f;
    g.sampling.seed = 1;
    if (!decode_ctx.empty()) {
      // A context at the model's limit leaves room for the timed steps.
      const int64_t limit = cfg.max_position_embeddings - decode_steps - 1;
      for (int64_t& c : decode_ctx) c = std::min(c, limit);
      const int64_t max_ctx = *std::max_element(decode_ctx.begin(), decode_ctx.end());
      tsa::Session s(engine, {.ctx_size = max_ctx + decode_steps + 1,
                              .prefill_chunk = 64,
                              .cuda_graphs = !no_cuda_graphs});
      // Untimed steps first: the n = 1 GEMM plans and the CUDA graph's
      // capture (the second step) stay out of the first context's timing.
      s.generate(std::vector<int32_t>{tok(rng)},
                 {.max_new_tokens = 3, .ignore_eos = true, .sampling = g.sampling});
      const double qkv = double(cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim;
      // Every weight a step reads: the layers and lm_head (the embedding
      // table gives one row, tied or not); one GPU's share of them.
      const double weight_bytes =
          2.0 *
          (double(cfg.vocab_size) * cfg.hidden_size +
           cfg.num_layers *
               (cfg.hidden_size * qkv + double(cfg.hidden_size) * cfg.num_heads * cfg.head_dim +
                3.0 * cfg.hidden_size * cfg.intermediate_size)) /
          world;
      // KV heads one GPU caches (each is replicated when fewer than GPUs).
      const int64_t kv_heads = std::max<int64_t>(1, cfg.num_kv_heads / world);
      std::printf(
          "| context | decode tok/s | ms/token | bytes read/token | GB/s |\n"
          "| ---: | ---: | ---: | ---: | ---: |\n");
      for (int64_t ctx : decode_ctx) {
        s.fill_cache_random(ctx);
        const std::vector<int32_t> prompt{tok(rng)};
        const tsa::GenerateResult r = s.generate(prompt, g);
        if (r.timings.generated_tokens != decode_steps + 1)
          throw tsa::Error(fmt::format("decode at {}: {} tokens generated, {} wanted", ctx,
                                       r.timings.generated_tokens, decode_steps + 1));
        const double ms = r.timings.decode_ms / decode_steps;
        // What one step must read at least: every weight once and the K/V
        // of every cached position (bf16).
        const double kv_bytes =
            2.0 * cfg.num_layers * (ctx + decode_steps / 2) * kv_heads * cfg.head_dim * 2;
        const double gbps = (weight_bytes + kv_bytes) / (ms * 1e-3) / 1e9;
        std::printf("| %lld | %.1f | %.3f | %.0f MB | %.0f |\n", static_cast<long long>(ctx),
                    1e3 / ms, ms, (weight_bytes + kv_bytes) / 1e6, gbps);
        std::fflush(stdout);
        j["decode"].push_back({{"context", ctx},
                               {"tokens_per_s", 1e3 / ms},
                               {"ms_per_token", ms},
                               {"kv_bytes", kv_bytes},
                               {"weight_bytes", weight_bytes},
                               {"achieved_gb_per_s", gbps}});
      }
    }
    if (batch > 0 && !decode_ctx.empty()) {
      if (world > 1) throw tsa::Error("--batch is not supported with --tp");
      std::printf(
          "\n| batch | context | decode tok/s (sum) | ms/step | prefill s (all) |\n"
          "| ---: | ---: | ---: | ---: | ---: |\n");
      for (int64_t ctx : decode_ctx) {
        // Each sequence: C prompt tokens and the timed steps, in 16-token
        // blocks; the pool holds every sequence's whole blocks, so none is
        // preempted (a recompute would land in the timed steps).
        const int64_t per_seq = ctx + decode_steps + 2;
        const int64_t per_seq_blocks = (per_seq + 15) / 16;
        std::vector<std::vector<int32_t>> prompts;
        for (int64_t i = 0; i < batch; ++i) prompts.push_back(random_ids(ctx));
        const auto t0 = Clock::now();
        std::vector<tsa::GenerateResult> rs;
        try {
          tsa::Batch b(engine, {.block_size = 16,
                                .kv_tokens = batch * per_seq_blocks * 16,
                                .max_seqs = batch,
                                .max_seq_tokens = per_seq});
          rs = b.generate(prompts, g);
        } catch (const tsa::Error& e) {
          std::printf("| %lld | %lld | - | - | - |  (%s)\n", static_cast<long long>(batch),
                      static_cast<long long>(ctx), e.what());
          continue;
        }
        const double total_ms = ms_since(t0);
        // All prompts are prefilled (one by one) before the first batched
        // step; the rest of the wall time is the steps.
        double ttft_ms = 0;
        for (const auto& r : rs) ttft_ms += r.timings.ttft_ms;
        const double step_ms = (total_ms - ttft_ms) / decode_steps;
        const double tps = batch * 1e3 / step_ms;
        std::printf("| %lld | %lld | %.1f | %.3f | %.1f |\n", static_cast<long long>(batch),
                    static_cast<long long>(ctx), tps, step_ms, ttft_ms / 1e3);
        std::fflush(stdout);
        j["batch_decode"].push_back({{"batch", batch},
                                     {"context", ctx},
                                     {"tokens_per_s", tps},
                                     {"ms_per_step", step_ms},
                                     {"prefill_ms", ttft_ms}});
      }
    }
    if (json_path == "-") {
      std::printf("%s\n", j.dump(2).c_str());
    } else if (!json_path.empty() && launch->leader()) {
      std::ofstream(json_path) << j.dump(2) << "\n";
    }
    return launch->finish(0);
  } catch (const tsa::Error& e) {
    const std::string rank = launch ? launch->error_prefix() : "";
    std::fprintf(stderr, "tsa-bench: error: %s%s\n", rank.c_str(), e.what());
    return 1;
  }
}
