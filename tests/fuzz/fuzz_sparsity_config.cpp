// libFuzzer target: arbitrary text as a sparsity config, for a 32-layer model.
#include <cstdint>
#include <string>

#include "tsa/error.h"
#include "tsa/sparsity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const tsa::SparsityPlan plan = tsa::SparsityPlan::from_json_text(text, 32, "fuzz.json");
    if (plan.layers.size() != 32) __builtin_trap();
  } catch (const tsa::Error&) {
  }
  return 0;
}
