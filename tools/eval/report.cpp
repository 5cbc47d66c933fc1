#include "eval/report.h"

#include <map>
#include <set>

#include <fmt/format.h>

namespace tsa::eval {

std::string perplexity_table(const std::vector<PerplexityRow>& rows) {
  std::string s = "| length | scored tokens | perplexity | mean NLL | seconds |\n";
  s += "| ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& r : rows)
    s += fmt::format("| {} | {} | {:.3f} | {:.4f} | {:.1f} |\n", r.length, r.scored, r.ppl, r.nll,
                     r.seconds);
  return s;
}

std::string retrieval_table(RetrievalTask task, const std::vector<RetrievalCell>& cells) {
  std::set<double> depths;
  std::map<int64_t, std::map<double, const RetrievalCell*>> grid;
  for (const auto& c : cells) {
    depths.insert(c.depth);
    grid[c.length][c.depth] = &c;
  }
  std::string s = fmt::format("| {} length \\ depth |", task_name(task));
  for (double d : depths) s += fmt::format(" {:.0f}% |", d * 100);
  s += " all |\n| ---: |";
  for (size_t i = 0; i <= depths.size(); ++i) s += " ---: |";
  s += "\n";
  int64_t total_ok = 0, total = 0;
  for (const auto& [len, row] : grid) {
    int64_t ok = 0, n = 0;
    s += fmt::format("| {} |", len);
    for (double d : depths) {
      const auto it = row.find(d);
      if (it == row.end()) {
        s += " - |";
        continue;
      }
      s += fmt::format(" {}/{} |", it->second->correct, it->second->trials);
      ok += it->second->correct;
      n += it->second->trials;
    }
    s += fmt::format(" {:.0f}% |\n", n ? 100.0 * ok / n : 0.0);
    total_ok += ok;
    total += n;
  }
  s += fmt::format("\nexact-match accuracy over all cells: {:.1f}% ({}/{})\n",
                   total ? 100.0 * total_ok / total : 0.0, total_ok, total);
  return s;
}

std::string agreement_table(const std::vector<AgreementRow>& rows) {
  std::string s =
      "| length | positions | top-1 agreement | mean KL (nats) | B sparse layers | B prefix "
      "dropped |\n";
  s += "| ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& r : rows)
    s += fmt::format("| {} | {} | {:.2f}% | {:.5f} | {} | {:.1f}% |\n", r.length, r.positions,
                     100 * r.top1, r.mean_kl, r.sparse_layers_b, 100 * r.dropped_b);
  return s;
}

nlohmann::json to_json(const std::vector<PerplexityRow>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows)
    j.push_back({{"length", r.length},
                 {"scored", r.scored},
                 {"ppl", r.ppl},
                 {"nll", r.nll},
                 {"seconds", r.seconds}});
  return j;
}

nlohmann::json to_json(const std::vector<RetrievalCell>& cells) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& c : cells)
    j.push_back({{"length", c.length},
                 {"depth", c.depth},
                 {"correct", c.correct},
                 {"trials", c.trials},
                 {"example", c.example}});
  return j;
}

nlohmann::json to_json(const std::vector<AgreementRow>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows)
    j.push_back({{"length", r.length},
                 {"positions", r.positions},
                 {"top1", r.top1},
                 {"mean_kl", r.mean_kl},
                 {"sparse_layers_b", r.sparse_layers_b},
                 {"dropped_b", r.dropped_b}});
  return j;
}

}  // namespace tsa::eval
