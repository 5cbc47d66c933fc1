// Entry points of the CUDA backend used by the engine (only built with CUDA).
#pragma once

#include <memory>

#include "model/runner.h"

namespace tsa {

// Throws tsa::Error when no CUDA device is usable (naming why).
void require_cuda_device();
std::unique_ptr<ModelRunner> make_cuda_runner(const Engine::Impl& engine,
                                              const SessionOptions& options);

}  // namespace tsa
