// tsa-eval output: Markdown tables for people, JSON for scripts.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/tasks.h"

namespace tsa::eval {

std::string perplexity_table(const std::vector<PerplexityRow>& rows);
std::string retrieval_table(RetrievalTask task, const std::vector<RetrievalCell>& cells);
std::string agreement_table(const std::vector<AgreementRow>& rows);

nlohmann::json to_json(const std::vector<PerplexityRow>& rows);
nlohmann::json to_json(const std::vector<RetrievalCell>& cells);
nlohmann::json to_json(const std::vector<AgreementRow>& rows);

}  // namespace tsa::eval
