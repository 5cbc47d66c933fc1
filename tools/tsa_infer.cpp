// tsa-infer: run a prompt through a Hugging Face model folder and stream the
// answer. Text goes to stdout; timings and progress go to stderr.
//
//   tsa-infer -m models/SmolLM2-135M-Instruct -p "Why is the sky blue?" --chat -n 64
//   tsa-infer -m /path/to/Llama-3.1-8B-Instruct --device cuda --tp 2 -f prompt.txt
//
// --tp N runs one process per GPU (tools/tp_launch.h); rank 0 prints.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tp_launch.h"
#include "tsa/tsa.h"

namespace {

std::atomic<bool> g_cancel{false};
extern "C" void on_sigint(int) {
  // Second Ctrl-C: give up immediately with the conventional status.
  if (g_cancel.exchange(true)) std::_Exit(130);
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += len;
  }
  return true;
}

std::string read_prompt_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw tsa::Error(fmt::format("prompt file {} does not exist or is not a file", path));
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f.good() && !f.eof()) throw tsa::Error(fmt::format("cannot read prompt file {}", path));
  std::string text = ss.str();
  if (text.empty()) throw tsa::Error(fmt::format("prompt file {} is empty", path));
  if (!valid_utf8(text)) throw tsa::Error(fmt::format("prompt file {} is not valid UTF-8", path));
  return text;
}

std::string default_model_dir(const char* argv0) {
  // The set-up script converts the default model into <repo>/models/; look
  // there relative to the executable (build/tools/tsa-infer) and the cwd.
  namespace fs = std::filesystem;
  const char* name = "SmolLM2-135M-Instruct";
  std::error_code ec;
  fs::path exe = fs::canonical("/proc/self/exe", ec);
  for (fs::path base : {fs::path("models"), exe.parent_path() / "../../models",
                        exe.parent_path() / "../share/tsa/models"}) {
    if (fs::is_directory(base / name, ec)) return (base / name).lexically_normal().string();
  }
  return (fs::path("models") / name).string();
}

void print_timings(const tsa::Timings& t, tsa::StopReason reason) {
  std::fprintf(stderr,
               "\n[tsa] load %.0f ms | prompt %lld tok: prefill %.1f ms (%.1f tok/s), "
               "ttft %.1f ms | generated %lld tok: decode %.1f tok/s | stop: %s\n",
               t.load_ms, static_cast<long long>(t.prompt_tokens), t.prefill_ms,
               t.prefill_tokens_per_s(), t.ttft_ms, static_cast<long long>(t.generated_tokens),
               t.decode_tokens_per_s(), tsa::stop_reason_name(reason));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tsa-infer: long-context LLM inference with Token Sparse Attention"};
  std::string model_dir, prompt_file, prompt, config_file, device = "cpu", system_prompt;
  std::string dump_dir, dump_filter;
  int64_t n_predict = 256, ctx_size = 0, prefill_chunk = 0;
  int threads = 0, tp = 1;
  bool chat = false, raw = false, as_json = false, ignore_eos = false, no_cuda_graphs = false;
  std::vector<std::string> stops;
  tsa::SamplingOptions sampling;
  uint64_t seed = 0;

  app.add_option("-m,--model", model_dir,
                 "Hugging Face model folder (default: models/SmolLM2-135M-Instruct)");
  app.add_option("-f,--file", prompt_file, "Read the prompt from this file");
  app.add_option("-p,--prompt", prompt, "Prompt text");
  app.add_option("-n,--n-predict", n_predict, "Tokens to generate (-1 = until EOS or full context)")
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 40));
  app.add_option("-c,--ctx-size", ctx_size, "Context size in tokens (0 = the model's maximum)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--prefill-chunk", prefill_chunk,
                 "Prompt tokens per forward call (0 = the backend's choice: on the GPU the "
                 "whole prompt when its activations fit)");
  app.add_option("--temp", sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
  app.add_option("--top-k", sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  app.add_option("--top-p", sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  app.add_option("--min-p", sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  app.add_option("--repeat-penalty", sampling.repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str();
  app.add_option("--repeat-last-n", sampling.repeat_last_n,
                 "Tokens the penalty looks back over (-1 = all)")
      ->capture_default_str();
  auto* seed_opt = app.add_option("--seed", seed, "Sampling seed (default: random)");
  app.add_option("--stop", stops, "Stop string (repeatable)");
  app.add_flag("--ignore-eos", ignore_eos, "Do not stop at end-of-sequence tokens");
  app.add_option("--config", config_file, "Sparsity config JSON (default: all layers dense)");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tp", tp,
                 "Tensor parallelism over N GPUs of this host, one process each (under mpirun: "
                 "the MPI ranks)")
      ->check(CLI::PositiveNumber);
  auto* chat_flag = app.add_flag("--chat", chat, "Wrap the prompt in the model's chat template");
  app.add_flag("--raw", raw, "Use the prompt as is (default)")->excludes(chat_flag);
  app.add_option("--system", system_prompt, "System message (with --chat)");
  app.add_flag("--json", as_json,
               "Print one JSON object with ids, text and timings instead of streaming");
  app.add_flag("--no-cuda-graphs", no_cuda_graphs,
               "Launch each decode step's kernels one by one (default: replay a CUDA graph)");
  app.add_option("--dump", dump_dir, "Debug: write named intermediates as .npy into this folder");
  app.add_option("--dump-filter", dump_filter,
                 "Debug: only intermediates whose name contains this");
  CLI11_PARSE(app, argc, argv);

  std::optional<tsa_tools::TpLaunch> launch;  // outlives the error message below
  try {
    if (!prompt_file.empty() && !prompt.empty())
      throw tsa::Error("give the prompt with -p or -f, not both");
    if (!prompt_file.empty()) prompt = read_prompt_file(prompt_file);
    if (prompt.empty()) throw tsa::Error("no prompt: use -p TEXT or -f FILE");
    if (model_dir.empty()) model_dir = default_model_dir(argv[0]);
    if (*seed_opt) sampling.seed = seed;
    if (tp > 1 && device != "cuda") throw tsa::Error("--tp needs --device cuda");
    // The other ranks start here, before anything touches CUDA.
    launch.emplace(tp, argc, argv);
    const bool leader = launch->leader();

    tsa::EngineOptions eo;
    eo.model_dir = model_dir;
    eo.device = device == "cuda" ? tsa::Device::Cuda : tsa::Device::Cpu;
    eo.sparsity_config = config_file;
    eo.threads = threads;
    eo.tp = launch->tp();
    auto engine = tsa::Engine::load(eo);

    const tsa::Tokenizer& tok = engine->tokenizer();
    std::vector<int32_t> ids;
    if (chat) {
      std::vector<tsa::ChatMessage> msgs;
      if (!system_prompt.empty()) msgs.push_back({"system", system_prompt});
      msgs.push_back({"user", prompt});
      // The template writes BOS itself where the model wants one.
      ids = tok.encode(tok.apply_chat_template(msgs, true), false);
    } else {
      ids = tok.encode(prompt, true);
    }

    tsa::SessionOptions so;
    so.ctx_size = ctx_size;
    so.prefill_chunk = prefill_chunk;
    so.dump_dir = dump_dir;
    so.dump_filter = dump_filter;
    so.cuda_graphs = !no_cuda_graphs;
    tsa::Session session(engine, so);

    tsa::GenerateOptions go;
    go.max_new_tokens = n_predict;
    go.stop = stops;
    go.ignore_eos = ignore_eos;
    go.sampling = sampling;
    // Ranks stop together: with several, Ctrl-C ends every process at once
    // (the default action) instead of each cancelling at its own step.
    const bool own_sigint = eo.tp.world == 1;
    if (own_sigint) go.cancel = &g_cancel;
    if (!as_json) {
      go.on_token = [](int32_t, std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
      };
    }
    // Long prompts report progress on stderr.
    if (ids.size() > 2048 && leader) {
      go.on_prefill_progress = [](int64_t done, int64_t total) {
        std::fprintf(stderr, "\r[tsa] prefill %lld/%lld tokens", static_cast<long long>(done),
                     static_cast<long long>(total));
        if (done == total) std::fprintf(stderr, "\n");
      };
    }
    if (own_sigint) std::signal(SIGINT, on_sigint);
    const tsa::GenerateResult r = session.generate(ids, go);
    std::signal(SIGINT, SIG_DFL);

    if (as_json) {
      nlohmann::json j;
      j["model"] = model_dir;
      j["prompt_tokens"] = r.prompt_ids.size();
      j["ids"] = r.ids;
      j["text"] = r.text;
      j["stop_reason"] = tsa::stop_reason_name(r.stop_reason);
      j["seed"] = r.seed;
      const auto& t = r.timings;
      j["timings"] = {{"load_ms", t.load_ms},
                      {"prefill_ms", t.prefill_ms},
                      {"ttft_ms", t.ttft_ms},
                      {"decode_ms", t.decode_ms},
                      {"prompt_tokens", t.prompt_tokens},
                      {"generated_tokens", t.generated_tokens},
                      {"prefill_tokens_per_s", t.prefill_tokens_per_s()},
                      {"decode_tokens_per_s", t.decode_tokens_per_s()}};
      std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    }
    if (leader) print_timings(r.timings, r.stop_reason);
    return launch->finish(r.stop_reason == tsa::StopReason::Cancelled ? 130 : 0);
  } catch (const tsa::Error& e) {
    std::fflush(stdout);
    const std::string rank = launch ? launch->error_prefix() : "";
    std::fprintf(stderr, "tsa-infer: error: %s%s\n", rank.c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    const std::string rank = launch ? launch->error_prefix() : "";
    std::fprintf(stderr, "tsa-infer: internal error: %s%s\n", rank.c_str(), e.what());
    return 2;
  }
}
