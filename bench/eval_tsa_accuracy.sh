#!/usr/bin/env bash
# Dense vs Token Sparse Attention accuracy on one model with tsa-eval: for
# each coverage tau, a copy of a sparsity config with that tau, then
# agreement (top-1, KL, share dropped), perplexity and retrieval under it.
#   bash bench/eval_tsa_accuracy.sh MODEL HAYSTACK OUT_DIR [CONFIG] [TAUS] [LENGTHS] [TASKS]
# defaults: configs/default.json, "0.005 0.01 0.02 0.05", "2048,4096,8192", "ppl"
# (agreement with dense always runs; TASKS are run under the sparse config)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1 HAY=$2 OUT=$3
CONFIG=${4:-configs/default.json}
TAUS=${5:-0.005 0.01 0.02 0.05}
LENGTHS=${6:-2048,4096,8192}
TASKS=${7:-ppl}
BIN=${TSA_BIN:-build/tools}
mkdir -p "$OUT"
for tau in $TAUS; do
  cfg="$OUT/config-tau$tau.json"
  python3 -c "
import json, sys
c = json.load(open('$CONFIG')); c.setdefault('defaults', {})['coverage'] = float('$tau')
for v in c.get('layers', {}).values():
    v.pop('coverage', None)
json.dump(c, open('$cfg', 'w'), indent=2)"
  # Agreement: dense (A) against this config (B).
  "$BIN/tsa-eval" -m "$MODEL" --haystack "$HAY" --tasks agree --lengths "$LENGTHS" \
    --config-b "$cfg" ${TSA_EVAL_ARGS:-} --json "$OUT/agree-tau$tau.json" > "$OUT/agree-tau$tau.md"
  # The tasks under the sparse config, to set beside the dense baseline.
  "$BIN/tsa-eval" -m "$MODEL" --haystack "$HAY" --tasks "$TASKS" --lengths "$LENGTHS" \
    --config "$cfg" --trials "${TSA_TRIALS:-2}" ${TSA_EVAL_ARGS:-} \
    --json "$OUT/tasks-tau$tau.json" > "$OUT/tasks-tau$tau.md"
  echo "tau $tau done: $OUT/tau$tau.md"
done
