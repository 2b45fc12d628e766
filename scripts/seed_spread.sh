#!/usr/bin/env bash
# The spread over training seeds of the README's demo numbers: train the demo (the README's command, train.json,
# small preset, 2 000 steps) with each seed, evaluate each model as the README does (demo test volumes, protocol
# exact, DISYRE next to the intensity z-score and the voxel-wise normative model) and on the held-out brain with
# simulated lesions (scripts/generalisation_check.py), then write mean +- sample standard deviation over the seeds.
#
#   bash scripts/seed_spread.sh                          # seeds 0 1 2 into runs/seed_spread (about 35 min, 2 cores)
#   SEEDS="0 1 2 3 4" OUT=runs/spread5 bash scripts/seed_spread.sh
#   TRAIN_ARGS="--max_epochs 1 --epoch_length 5" OUT=/tmp/spread bash scripts/seed_spread.sh   # a quick smoke run
#   TRAIN_ARGS="--intensity_within_mask False" EVAL_CONFIGS=whole_volume_scaling.json OUT=runs/variant \
#       bash scripts/seed_spread.sh   # a variant: TRAIN_ARGS override training, EVAL_CONFIGS patch both evaluations
#
# Run it on a quiet machine: two trainings at once each run about 4x slower. A seed whose model exists is not
# retrained (delete $OUT/seed<N> to redo it); the evaluations are rerun every time. Results: $OUT/seed_spread.json
# (every number per seed, mean and sd) and $OUT/seed_spread.md (the table, as in the README).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/seed_spread}
SEEDS=${SEEDS:-"0 1 2"}
mkdir -p "$OUT"
eval_configs="'bundle/configs/inference.json',"
extra_configs=()
for patch in ${EVAL_CONFIGS:-}; do
    eval_configs+="'$patch',"
    extra_configs+=(--extra_config "$patch")
done
eval_configs+="'bundle/configs/evaluate.json'"

for seed in $SEEDS; do
    run="$OUT/seed$seed"
    if [ ! -f "$run/models/model.pt" ]; then
        echo "== training, seed $seed -> $run"
        start=$(date +%s)
        # shellcheck disable=SC2086  # TRAIN_ARGS: extra overrides, word-split on purpose
        python -m monai.bundle run training --config_file bundle/configs/train.json --seed "$seed" \
            --output_dir "$run" --progress False ${TRAIN_ARGS:-}
        echo "seed $seed: trained in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
    fi
    echo "== seed $seed: demo evaluation (protocol exact) -> $run/evaluate"
    python -m monai.bundle run evaluating \
        --config_file "[$eval_configs]" \
        --model_path "$run/models/model.pt" --output_dir "$run/evaluate" --overwrite True --progress False
    echo "== seed $seed: held-out brain with simulated lesions -> $run/generalisation"
    python scripts/generalisation_check.py --model_path "$run/models/model.pt" --output_dir "$run/generalisation" \
        "${extra_configs[@]}"
done

python - "$OUT" $SEEDS <<'PY'
"""Mean +- sample sd over seeds of the headline numbers of every method, demo volumes and held-out brain."""
import json
import sys
from pathlib import Path

import numpy as np

out, seeds = Path(sys.argv[1]), sys.argv[2:]
columns = {"demo test volumes": "evaluate", "held-out brain, simulated lesions": "generalisation/report"}
metrics = ("pooled.average_precision", "pooled.best_dice", "pooled.auroc")
per_seed = {}
for seed in seeds:
    for column, folder in columns.items():
        headline = json.loads((out / f"seed{seed}" / folder / "metrics.json").read_text())["headline"]
        for method, values in headline.items():
            per_seed.setdefault(method, {}).setdefault(column, {}).setdefault(seed, [values[m] for m in metrics])
summary = {"seeds": seeds, "metrics": metrics, "protocol": "exact", "methods": {}}
lines = [f"| {len(seeds)} training seeds ({', '.join(seeds)}), mean +- sd | "
         + " | ".join(f"{c}: AP / best Dice / AUROC" for c in columns) + " |", "| --- |" + " --- |" * len(columns)]
for method, by_column in per_seed.items():
    cells, entry = [], {}
    for column in columns:
        values = np.array([by_column[column][s] for s in seeds], dtype=float)  # (seeds, metrics)
        mean, sd = values.mean(0), values.std(0, ddof=1) if len(seeds) > 1 else np.zeros(len(metrics))
        entry[column] = {"per_seed": dict(zip(seeds, values.tolist())), "mean": mean.tolist(), "sd": sd.tolist()}
        cells.append(" / ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(mean, sd)))
    summary["methods"][method] = entry
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
(out / "seed_spread.json").write_text(json.dumps(summary, indent=2))
(out / "seed_spread.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
