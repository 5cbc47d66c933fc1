// The long-context accuracy tasks of tsa-eval. Each runs on one Engine and
// returns rows that report.h prints as tables or JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "tsa/engine.h"

namespace tsa::eval {

struct EvalOptions {
  std::vector<int64_t> lengths;  // prompt lengths in tokens
  std::vector<double> depths;    // needle depths in [0, 1]
  int64_t last_n = 256;          // positions scored by perplexity / agreement
  int64_t trials = 3;            // retrieval prompts per (length, depth)
  uint64_t seed = 1;
  bool chat = false;  // wrap retrieval prompts in the chat template
  SessionOptions session;
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

struct PerplexityRow {
  int64_t length = 0;
  int64_t scored = 0;  // tokens whose log-likelihood was counted
  double nll = 0;      // mean negative log-likelihood (nats)
  double ppl = 0;
  double seconds = 0;
};

enum class RetrievalTask { Passkey, Needle };
const char* task_name(RetrievalTask t);

struct RetrievalCell {
  int64_t length = 0;
  double depth = 0;
  int64_t correct = 0;
  int64_t trials = 0;
  std::string example;  // one generated answer, for eyeballing failures
};

struct AgreementRow {
  int64_t length = 0;
  int64_t positions = 0;
  double top1 = 0;              // share of positions whose argmax agrees
  double mean_kl = 0;           // mean KL(P_a || P_b) in nats
  double dropped_b = 0;         // B's share of prefix tokens dropped, mean over its sparse layers
  int64_t sparse_layers_b = 0;  // layers of B that ran sparse on this prompt
};

std::vector<PerplexityRow> run_perplexity(std::shared_ptr<const Engine> engine, const Haystack& hay,
                                          const EvalOptions& o);

std::vector<RetrievalCell> run_retrieval(std::shared_ptr<const Engine> engine, const Haystack& hay,
                                         RetrievalTask task, const EvalOptions& o);

// Log-probabilities of the last `last_n` positions of one haystack prompt
// per length, from one engine; compare() turns two such sets into rows.
struct LogProbSet {
  std::vector<int64_t> lengths;
  std::vector<std::vector<float>> logp;  // per length: last_n x vocab
  std::vector<double> dropped;           // per length: mean share of prefix tokens dropped
  std::vector<int64_t> sparse_layers;    // per length: layers that ran sparse
  int64_t vocab = 0;
};
LogProbSet collect_logprobs(std::shared_ptr<const Engine> engine, const Haystack& hay,
                            const EvalOptions& o);
std::vector<AgreementRow> compare(const LogProbSet& a, const LogProbSet& b);

}  // namespace tsa::eval
