// Umbrella header of the tsa library.
#pragma once

#include "tsa/batch.h"
#include "tsa/engine.h"
#include "tsa/error.h"
#include "tsa/model_config.h"
#include "tsa/sparsity.h"
#include "tsa/tokenizer.h"
#include "tsa/version.h"
