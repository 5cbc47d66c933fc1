// tsa::Error: the one exception type the library throws for bad input,
// missing files and runtime failures. The message names the file, tensor,
// layer or option at fault; the library never exits or aborts on its own.
#pragma once

#include <stdexcept>
#include <string>

namespace tsa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown (as a tsa::Error) when generation or prefill was stopped through a
// cancel flag or callback; callers that want partial results catch it first.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace tsa
