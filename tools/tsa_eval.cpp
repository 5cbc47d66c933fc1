// tsa-eval: long-context accuracy of a model folder on haystack text.
//   perplexity  over the last N tokens of prompts filled with haystack text
//   passkey     a random 5-digit key hidden at several depths, then asked for
//   needle      RULER-style "special magic number for <key>" retrieval
//   agreement   top-1 agreement and mean KL between two attention settings
//               (--config vs --config-b, e.g. dense vs Token Sparse Attention)
//
//   tsa-eval -m models/SmolLM2-135M-Instruct --haystack ../shared/data/pg_essays \
//            --tasks ppl,passkey,needle --lengths 1024,2048,4096,8192 --json out.json
#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "eval/haystack.h"
#include "eval/report.h"
#include "eval/tasks.h"
#include "tsa/tsa.h"

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int64_t> default_lengths(int64_t max_len) {
  std::vector<int64_t> v;
  for (int64_t l = 1024; l <= max_len && v.size() < 8; l *= 2) v.push_back(l);
  if (v.empty()) v.push_back(max_len);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tsa-eval: long-context accuracy (perplexity, passkey, needle, agreement)"};
  std::string model_dir, haystack, tasks = "ppl,passkey,needle", config, config_b, json_path,
                                   device = "cpu";
  std::vector<int64_t> lengths;
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  tsa::eval::EvalOptions o;
  int threads = 0;
  bool quiet = false;
  app.add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  app.add_option("--haystack", haystack, "Folder of .txt files to fill prompts with")->required();
  app.add_option("--tasks", tasks, "Comma-separated: ppl, passkey, needle, agree")
      ->capture_default_str();
  app.add_option("--lengths", lengths,
                 "Prompt lengths in tokens (default: 1K, 2K, ... up to the "
                 "model's context)")
      ->delimiter(',');
  app.add_option("--depths", depths, "Needle depths in [0, 1]")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--last-n", o.last_n, "Positions scored by ppl and agree")->capture_default_str();
  app.add_option("--trials", o.trials, "Retrieval prompts per (length, depth)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed for keys and needle placement")->capture_default_str();
  app.add_flag("--chat", o.chat, "Wrap retrieval prompts in the model's chat template");
  app.add_option("--config", config, "Sparsity config of the run (default dense)");
  app.add_option("--config-b", config_b, "agree: the second setting (default dense)");
  app.add_option("--prefill-chunk", o.session.prefill_chunk,
                 "Prompt tokens per forward call (0 = the backend's choice: the whole prompt "
                 "with sparse layers)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  app.add_option("--json", json_path, "Also write all results as JSON to this file ('-' = stdout)");
  app.add_flag("-q,--quiet", quiet, "No progress lines on stderr");
  CLI11_PARSE(app, argc, argv);

  try {
    auto load = [&](const std::string& cfg) {
      tsa::EngineOptions eo;
      eo.model_dir = model_dir;
      eo.sparsity_config = cfg;
      eo.threads = threads;
      eo.device = device == "cuda" ? tsa::Device::Cuda : tsa::Device::Cpu;
      return tsa::Engine::load(eo);
    };
    auto engine = load(config);
    const int64_t max_ctx = engine->config().max_position_embeddings;
    o.lengths = lengths.empty() ? default_lengths(max_ctx) : lengths;
    o.depths = depths;
    for (int64_t l : o.lengths)
      if (l < 64 || l > max_ctx)
        throw tsa::Error(
            fmt::format("--lengths: {} is outside [64, {}] (the model's context)", l, max_ctx));
    for (double d : o.depths)
      if (d < 0 || d > 1) throw tsa::Error(fmt::format("--depths: {} is outside [0, 1]", d));
    if (o.last_n < 1 || o.trials < 1) throw tsa::Error("--last-n and --trials must be >= 1");
    o.session.ctx_size = *std::max_element(o.lengths.begin(), o.lengths.end()) + 64;
    if (o.session.ctx_size > max_ctx) o.session.ctx_size = max_ctx;
    if (!quiet)
      o.log = [](const std::string& s) { std::fprintf(stderr, "[tsa-eval] %s\n", s.c_str()); };

    const tsa::eval::Haystack hay = tsa::eval::load_haystack(haystack, engine->tokenizer());
    nlohmann::json j = {{"model", model_dir},
                        {"config", config.empty() ? "dense" : config},
                        {"haystack", haystack},
                        {"haystack_tokens", hay.ids.size()},
                        {"lengths", o.lengths}};
    std::printf("# tsa-eval: %s (config: %s), haystack %s (%lld files, %zu tokens)\n\n",
                model_dir.c_str(), config.empty() ? "dense" : config.c_str(), haystack.c_str(),
                static_cast<long long>(hay.files), hay.ids.size());
    for (const std::string& task : split(tasks)) {
      if (task == "ppl") {
        const auto rows = tsa::eval::run_perplexity(engine, hay, o);
        std::printf("## perplexity over the last %lld tokens\n\n%s\n",
                    static_cast<long long>(o.last_n), tsa::eval::perplexity_table(rows).c_str());
        j["perplexity"] = tsa::eval::to_json(rows);
      } else if (task == "passkey" || task == "needle") {
        const auto t = task == "passkey" ? tsa::eval::RetrievalTask::Passkey
                                         : tsa::eval::RetrievalTask::Needle;
        const auto cells = tsa::eval::run_retrieval(engine, hay, t, o);
        std::printf("## %s retrieval (correct/trials)\n\n%s\n", task.c_str(),
                    tsa::eval::retrieval_table(t, cells).c_str());
        j[task] = tsa::eval::to_json(cells);
      } else if (task == "agree") {
        const auto a = tsa::eval::collect_logprobs(engine, hay, o);
        auto engine_b = load(config_b);
        const auto b = tsa::eval::collect_logprobs(engine_b, hay, o);
        const auto rows = tsa::eval::compare(a, b);
        std::printf("## agreement: A = %s, B = %s, last %lld positions\n\n%s\n",
                    config.empty() ? "dense" : config.c_str(),
                    config_b.empty() ? "dense" : config_b.c_str(), static_cast<long long>(o.last_n),
                    tsa::eval::agreement_table(rows).c_str());
        j["agreement"] = {{"config_b", config_b.empty() ? "dense" : config_b},
                          {"rows", tsa::eval::to_json(rows)}};
      } else {
        throw tsa::Error(
            fmt::format("--tasks: unknown task '{}' (ppl, passkey, needle, agree)", task));
      }
      std::fflush(stdout);
    }
    if (json_path == "-") {
      std::printf("%s\n", j.dump(2).c_str());
    } else if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << j.dump(2) << "\n";
      if (!f) throw tsa::Error(fmt::format("cannot write {}", json_path));
    }
    return 0;
  } catch (const tsa::Error& e) {
    std::fprintf(stderr, "tsa-eval: error: %s\n", e.what());
    return 1;
  }
}
