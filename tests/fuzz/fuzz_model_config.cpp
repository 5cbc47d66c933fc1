// libFuzzer target: arbitrary text as config.json and generation_config.json.
#include <cstdint>
#include <string>

#include "load/model_config_parse.h"
#include "tsa/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    tsa::ModelConfig cfg = tsa::parse_model_config(text, "fuzz/config.json");
    tsa::merge_generation_config(cfg, text, "fuzz/generation_config.json");
  } catch (const tsa::Error&) {
  }
  return 0;
}
