// Per-layer Token Sparse Attention settings. A JSON file becomes an immutable
// plan at load time (one entry per decoder layer); no file means all dense.
// Format (docs/SPARSITY.md):
//   {
//     "defaults": {"mode": "dense", "coverage": 0.005, "window": 128,
//                  "min_tokens": 1024, "kernel_size": 7, "min_prompt_tokens": 0},
//     "layers": {"15-30": {"mode": "tsa"}, "14": {"mode": "tsa", "coverage": 0.008}}
//   }
// Layer keys are an index, an inclusive range "a-b", or "second_half".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tsa {

struct LayerSparsity {
  bool sparse = false;            // mode "tsa"
  double coverage = 0.005;        // tau in [0, 1): attention mass that may be dropped
  int64_t window = 128;           // W: observation window and always-kept tail
  int64_t min_tokens = 1024;      // never keep fewer prefix tokens
  int64_t kernel_size = 7;        // odd width of the score smoothing
  int64_t min_prompt_tokens = 0;  // prompts shorter than this stay dense
  // Benchmarks only (not read from JSON; EngineOptions::force_keep_fraction
  // sets it on every sparse layer): > 0 makes a layer that applies keep
  // round(F * (L - W)) prefix tokens per head, skipping the coverage budget
  // (spec steps 4-5), to time the paper's operating points.
  double force_keep_fraction = 0;
};

struct SparsityPlan {
  std::vector<LayerSparsity> layers;  // one per decoder layer

  static SparsityPlan dense(int64_t num_layers);
  // Parses and validates; errors name `path` and the offending key.
  static SparsityPlan from_file(const std::string& path, int64_t num_layers);
  static SparsityPlan from_json_text(const std::string& text, int64_t num_layers,
                                     const std::string& origin = "<string>");
  bool any_sparse() const;
};

}  // namespace tsa
