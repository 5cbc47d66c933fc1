// tsa-profile: chooses the sparse layers of a model the way the Token Sparse
// Attention paper does. It runs a calibration prompt densely, measures each
// layer's representation drift (mean over tokens of ||h_out - h_in|| /
// ||h_in||, h the residual stream around the whole decoder layer),
// normalises the drifts to sum to 1, and writes a sparsity config whose
// sparse layers are those at or below the delta-quantile (linear
// interpolation, as torch.quantile).
//
//   tsa-profile -m models/SmolLM2-135M-Instruct --haystack ../shared/data/pg_essays \
//               --length 8192 -o configs/smollm2-135m-instruct.json
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tsa/tsa.h"

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The calibration text: a file, or the .txt files of a folder in name order.
std::string calibration_text(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return read_text(path);
  if (!fs::is_directory(path, ec))
    throw tsa::Error(fmt::format("calibration text {} does not exist", path));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path))
    if (e.path().extension() == ".txt") files.push_back(e.path());
  if (files.empty()) throw tsa::Error(fmt::format("{} holds no .txt files", path));
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) text += read_text(f) + "\n\n";
  return text;
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tsa-profile: pick sparse layers by representation drift"};
  std::string model_dir, text_path, out_path, device = "cpu";
  int64_t length = 8192;
  double delta = 0.5, coverage = 0.005;
  int64_t window = 128, min_tokens = 1024, kernel_size = 7;
  int threads = 0;
  app.add_option("-m,--model", model_dir, "Hugging Face model folder")->required();
  app.add_option("--haystack,-f", text_path, "Calibration text: a file or a folder of .txt files")
      ->required();
  app.add_option("--length", length, "Calibration prompt length in tokens")->capture_default_str();
  app.add_option("--delta", delta, "Quantile of the drift at or below which layers go sparse")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--coverage", coverage, "tau written into the config")->capture_default_str();
  app.add_option("--window", window, "window written into the config")->capture_default_str();
  app.add_option("--min-tokens", min_tokens, "min_tokens written into the config")
      ->capture_default_str();
  app.add_option("--kernel-size", kernel_size, "kernel_size written into the config")
      ->capture_default_str();
  app.add_option("-o,--output", out_path, "Write the sparsity config here (default: stdout)");
  app.add_option("--device", device, "cpu (drift is measured on the CPU backend)")
      ->check(CLI::IsMember({"cpu"}));
  app.add_option("-t,--threads", threads, "CPU threads (0 = all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    auto engine = tsa::Engine::load({.model_dir = model_dir, .threads = threads});
    const tsa::ModelConfig& cfg = engine->config();
    if (length < 2 || length > cfg.max_position_embeddings)
      throw tsa::Error(
          fmt::format("--length {} is outside [2, {}]", length, cfg.max_position_embeddings));
    std::vector<int32_t> ids = engine->tokenizer().encode(calibration_text(text_path), true);
    if (static_cast<int64_t>(ids.size()) < length)
      throw tsa::Error(fmt::format("the calibration text has {} tokens, fewer than --length {}",
                                   ids.size(), length));
    ids.resize(length);
    tsa::Session s(engine, {.ctx_size = length, .prefill_chunk = length, .profile = true});
    s.prefill(ids);
    std::vector<double> drift = s.profile().layer_drift;
    const double total = std::accumulate(drift.begin(), drift.end(), 0.0);
    for (double& d : drift) d /= total;
    const double threshold = quantile(drift, delta);

    std::vector<int64_t> sparse;
    std::fprintf(stderr, "| layer | normalised drift | sparse |\n| ---: | ---: | :---: |\n");
    for (size_t l = 0; l < drift.size(); ++l) {
      const bool sp = drift[l] <= threshold;
      if (sp) sparse.push_back(static_cast<int64_t>(l));
      std::fprintf(stderr, "| %zu | %.4f | %s |\n", l, drift[l], sp ? "yes" : "");
    }
    nlohmann::ordered_json j;
    j["model"] = std::filesystem::path(model_dir).filename().string();
    j["description"] = fmt::format(
        "tsa-profile: layers whose normalised drift is <= the {} quantile ({:.4f}) on a {}-token "
        "calibration prompt",
        delta, threshold, length);
    j["defaults"] = {{"mode", "dense"},
                     {"coverage", coverage},
                     {"window", window},
                     {"min_tokens", min_tokens},
                     {"kernel_size", kernel_size}};
    nlohmann::ordered_json layers = nlohmann::ordered_json::object();
    for (int64_t l : sparse) layers[std::to_string(l)] = {{"mode", "tsa"}};
    j["layers"] = layers;
    const std::string text = j.dump(2) + "\n";
    // The file must load back as a valid plan for this model.
    tsa::SparsityPlan::from_json_text(text, cfg.num_layers, "tsa-profile output");
    if (out_path.empty()) {
      std::fputs(text.c_str(), stdout);
    } else {
      std::ofstream(out_path) << text;
      std::fprintf(stderr, "wrote %s: %zu sparse layers of %lld\n", out_path.c_str(), sparse.size(),
                   static_cast<long long>(cfg.num_layers));
    }
    return 0;
  } catch (const tsa::Error& e) {
    std::fprintf(stderr, "tsa-profile: error: %s\n", e.what());
    return 1;
  }
}
