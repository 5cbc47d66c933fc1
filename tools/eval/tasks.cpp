#include "eval/tasks.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include <fmt/format.h>

namespace tsa::eval {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void log_line(const EvalOptions& o, const std::string& s) {
  if (o.log) o.log(s);
}

// A prompt laid out as [head][filler with the needle inside][tail]: the
// filler fills the token budget so the whole prompt is `length` tokens.
std::vector<int32_t> layout(const std::vector<int32_t>& head, const std::vector<int32_t>& needle,
                            const std::vector<int32_t>& tail, const Haystack& hay, int64_t length,
                            double depth, int64_t offset) {
  const int64_t fill = length - static_cast<int64_t>(head.size() + needle.size() + tail.size());
  if (fill < 1) throw Error(fmt::format("prompt length {} is too short for the task", length));
  std::vector<int32_t> f = filler(hay, offset, fill);
  const int64_t at = static_cast<int64_t>(std::llround(depth * fill));
  std::vector<int32_t> ids(head);
  ids.insert(ids.end(), f.begin(), f.begin() + at);
  ids.insert(ids.end(), needle.begin(), needle.end());
  ids.insert(ids.end(), f.begin() + at, f.end());
  ids.insert(ids.end(), tail.begin(), tail.end());
  return ids;
}

struct TaskText {
  std::string intro, needle, question, answer_prefix, expected;
};

TaskText make_text(RetrievalTask task, std::mt19937_64& rng) {
  static const char* kKeys[] = {"apple",  "river",  "castle", "violet", "engine",  "harbor",
                                "pepper", "meadow", "falcon", "copper", "lantern", "glacier"};
  TaskText t;
  if (task == RetrievalTask::Passkey) {
    const std::string key = std::to_string(std::uniform_int_distribution<int>(10000, 99999)(rng));
    t.intro =
        "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
        "it. I will quiz you about the important information there.\n\n";
    t.needle = "\n\nThe pass key is " + key + ". Remember it. " + key + " is the pass key.\n\n";
    t.question = "\n\nWhat is the pass key?";
    t.answer_prefix = " The pass key is";
    t.expected = key;
  } else {
    const std::string key = kKeys[std::uniform_int_distribution<int>(0, 11)(rng)];
    const std::string value =
        std::to_string(std::uniform_int_distribution<int>(1000000, 9999999)(rng));
    t.intro =
        "Some special magic numbers are hidden within the following text. Make sure to memorize "
        "it. I will quiz you about the numbers afterwards.\n\n";
    t.needle = "\n\nOne of the special magic numbers for " + key + " is: " + value + ".\n\n";
    t.question =
        "\n\nWhat is the special magic number for " + key + " mentioned in the provided text?";
    t.answer_prefix = " The special magic number for " + key + " mentioned in the provided text is";
    t.expected = value;
  }
  return t;
}

}  // namespace

const char* task_name(RetrievalTask t) {
  return t == RetrievalTask::Passkey ? "passkey" : "needle";
}

std::vector<PerplexityRow> run_perplexity(std::shared_ptr<const Engine> engine, const Haystack& hay,
                                          const EvalOptions& o) {
  const Tokenizer& tok = engine->tokenizer();
  const int64_t vocab = engine->config().vocab_size;
  std::vector<PerplexityRow> rows;
  Session s(engine, o.session);  // one KV cache, emptied per prompt
  for (int64_t len : o.lengths) {
    s.reset();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids;
    if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    const auto f = filler(hay, 0, len - static_cast<int64_t>(ids.size()));
    ids.insert(ids.end(), f.begin(), f.end());
    const int64_t scored = std::min<int64_t>(o.last_n, len - 1);
    // Rows for positions len-scored-1 .. len-2 predict tokens len-scored .. len-1.
    const auto logits = s.prefill(ids, scored + 1);
    double nll = 0;
    for (int64_t i = 0; i < scored; ++i) {
      const float* row = logits.data() + i * vocab;
      const float mx = *std::max_element(row, row + vocab);
      double z = 0;
      for (int64_t v = 0; v < vocab; ++v) z += std::exp(double(row[v]) - mx);
      const int32_t target = ids[len - scored + i];
      nll += -(double(row[target]) - mx - std::log(z));
    }
    PerplexityRow r{len, scored, nll / scored, std::exp(nll / scored), seconds_since(t0)};
    log_line(o, fmt::format("perplexity: {} tokens -> {:.3f} ({:.1f} s)", len, r.ppl, r.seconds));
    rows.push_back(r);
  }
  return rows;
}

std::vector<RetrievalCell> run_retrieval(std::shared_ptr<const Engine> engine, const Haystack& hay,
                                         RetrievalTask task, const EvalOptions& o) {
  const Tokenizer& tok = engine->tokenizer();
  std::vector<RetrievalCell> cells;
  Session s(engine, o.session);
  int64_t cell_index = 0;
  for (int64_t len : o.lengths) {
    for (double depth : o.depths) {
      RetrievalCell c{len, depth, 0, 0, {}};
      for (int64_t trial = 0; trial < o.trials; ++trial) {
        std::mt19937_64 rng(o.seed * 1000003 + cell_index * 101 + trial);
        const TaskText t = make_text(task, rng);
        std::vector<int32_t> head, tail;
        if (o.chat) {
          // Render the template around a marker, then put the filler where it is.
          const std::string marker = "\x01";
          const std::string chat =
              tok.apply_chat_template({{"user", t.intro + marker + t.question}}, true);
          const size_t at = chat.find(marker);
          head = tok.encode(chat.substr(0, at), false);
          tail = tok.encode(chat.substr(at + marker.size()) + t.answer_prefix.substr(1), false);
        } else {
          head = tok.encode(t.intro, true);
          tail = tok.encode(t.question + t.answer_prefix, false);
        }
        const auto needle = tok.encode(t.needle, false);
        const int64_t offset = std::uniform_int_distribution<int64_t>(
            0, static_cast<int64_t>(hay.ids.size()) - 1)(rng);
        GenerateOptions g;
        g.max_new_tokens = static_cast<int64_t>(tok.encode(" " + t.expected, false).size()) + 6;
        // Prompt and answer together fit in `len` tokens.
        const auto ids = layout(head, needle, tail, hay, len - g.max_new_tokens, depth, offset);
        s.reset();
        g.sampling.temperature = 0;
        const GenerateResult r = s.generate(ids, g);
        c.trials += 1;
        if (r.text.find(t.expected) != std::string::npos) c.correct += 1;
        if (trial == 0) c.example = r.text;
      }
      log_line(o, fmt::format("{}: {} tokens, depth {:.0f}%: {}/{}", task_name(task), len,
                              depth * 100, c.correct, c.trials));
      cells.push_back(c);
      ++cell_index;
    }
  }
  return cells;
}

LogProbSet collect_logprobs(std::shared_ptr<const Engine> engine, const Haystack& hay,
                            const EvalOptions& o) {
  const Tokenizer& tok = engine->tokenizer();
  LogProbSet set;
  set.vocab = engine->config().vocab_size;
  Session s(engine, o.session);
  for (int64_t len : o.lengths) {
    s.reset();
    std::vector<int32_t> ids;
    if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    // A different stretch of text than perplexity uses.
    const auto f = filler(hay, static_cast<int64_t>(hay.ids.size()) / 3,
                          len - static_cast<int64_t>(ids.size()));
    ids.insert(ids.end(), f.begin(), f.end());
    const int64_t n = std::min<int64_t>(o.last_n, len);
    const auto logits = s.prefill(ids, n);
    std::vector<float> lp(logits.begin(), logits.end());
    for (int64_t i = 0; i < n; ++i) {
      float* row = lp.data() + i * set.vocab;
      const float mx = *std::max_element(row, row + set.vocab);
      double z = 0;
      for (int64_t v = 0; v < set.vocab; ++v) z += std::exp(double(row[v]) - mx);
      const float lz = static_cast<float>(mx + std::log(z));
      for (int64_t v = 0; v < set.vocab; ++v) row[v] -= lz;
    }
    // Token Sparse Attention's work on this prompt: keep counts per layer.
    double dropped = 0;
    int64_t sparse = 0;
    const auto& keep = s.profile().tsa_keep;
    for (size_t l = 0; l < keep.size(); ++l) {
      if (keep[l] < 0) continue;
      const int64_t prefix = len - engine->sparsity().layers[l].window;
      dropped += 1.0 - double(keep[l]) / prefix;
      ++sparse;
    }
    set.dropped.push_back(sparse ? dropped / sparse : 0.0);
    set.sparse_layers.push_back(sparse);
    set.lengths.push_back(len);
    set.logp.push_back(std::move(lp));
    log_line(o, fmt::format("agreement: {} tokens collected", len));
  }
  return set;
}

std::vector<AgreementRow> compare(const LogProbSet& a, const LogProbSet& b) {
  if (a.lengths != b.lengths || a.vocab != b.vocab)
    throw Error("agreement: the two runs differ in lengths or vocabulary");
  std::vector<AgreementRow> rows;
  for (size_t k = 0; k < a.lengths.size(); ++k) {
    const int64_t n = static_cast<int64_t>(a.logp[k].size()) / a.vocab;
    AgreementRow r{a.lengths[k], n, 0, 0, b.dropped[k], b.sparse_layers[k]};
    for (int64_t i = 0; i < n; ++i) {
      const float* pa = a.logp[k].data() + i * a.vocab;
      const float* pb = b.logp[k].data() + i * a.vocab;
      if (std::max_element(pa, pa + a.vocab) - pa == std::max_element(pb, pb + a.vocab) - pb)
        r.top1 += 1;
      double kl = 0;
      for (int64_t v = 0; v < a.vocab; ++v) kl += std::exp(double(pa[v])) * (double(pa[v]) - pb[v]);
      r.mean_kl += std::max(0.0, kl);
    }
    r.top1 /= n;
    r.mean_kl /= n;
    rows.push_back(r);
  }
  return rows;
}

}  // namespace tsa::eval
