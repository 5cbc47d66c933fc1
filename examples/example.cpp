// Embedding tsa: load a model folder, generate greedily, print the text.
//   tsa-example MODEL_DIR [PROMPT]
#include <cstdio>
#include <string>

#include <tsa/tsa.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  try {
    auto engine = tsa::Engine::load({.model_dir = argv[1]});
    tsa::Session session(engine);
    const std::string prompt = argc > 2 ? argv[2] : "The best way to start is";
    tsa::GenerateOptions options;
    options.max_new_tokens = 16;
    options.sampling.temperature = 0;  // greedy
    options.on_token = [](int32_t, std::string_view text) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      return true;
    };
    const tsa::GenerateResult r = session.generate(engine->tokenizer().encode(prompt), options);
    std::printf("\n[%lld prompt tokens, %lld generated, stop: %s]\n",
                static_cast<long long>(r.timings.prompt_tokens),
                static_cast<long long>(r.timings.generated_tokens),
                tsa::stop_reason_name(r.stop_reason));
    return 0;
  } catch (const tsa::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
