#!/usr/bin/env bash
# Compare the anomaly detectors of this package on the embedded demo: train every method's `small` preset,
# write its anomaly maps for the validation and test splits, then score all of them in ONE report per protocol
# (DISYRE, the diffusion baselines, the intensity z-score and the voxel-wise normative model), thresholds
# calibrated on the validation split.
#
#   bash scripts/compare_methods.sh                      # every method, protocols exact and behrendt
#   METHODS="disyre cddpm" bash scripts/compare_methods.sh
#   OUT=runs/compare PROTOCOLS="exact behrendt upd" bash scripts/compare_methods.sh
#   DISYRE_MODEL=bundle/models/model.pt bash scripts/compare_methods.sh   # DISYRE's shipped demo weights, no training
#   SEEDS="0 1 2" bash scripts/compare_methods.sh        # every method trained with 3 seeds: mean +- sd tables
#   TRAIN_ARGS="--max_epochs 1 --epoch_length 3" OUT=/tmp/smoke bash scripts/compare_methods.sh   # a smoke run
#
# A method whose bundle patch is bundle/configs/<method>.json is trained with (ldm: both of its stages)
#   python -m monai.bundle run training --config_file "['bundle/configs/train.json','bundle/configs/<method>.json']"
# (DISYRE: train.json alone). Existing trained weights are kept (delete $OUT/<method> to retrain); the maps of a
# method are rewritten every run. Each method's report is in $OUT/report_<protocol>/ (metrics.json, per_case.csv,
# pr_curve.png with every method); the tables are printed at the end, every number labelled with its protocol.
# With several SEEDS each method is trained once per seed (<method>_s<seed>), all of them are scored in ONE
# evaluation per protocol, and $OUT/seed_table.md / seed_table.json give mean +- sample sd over the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/compare}
METHODS=${METHODS:-"disyre cddpm pddpm ddpm ldm"}
PROTOCOLS=${PROTOCOLS:-"exact behrendt"}
SEEDS=${SEEDS:-0}
CONFIGS=bundle/configs
mkdir -p "$OUT"

configs() {  # configs() BASE METHOD -> the --config_file list of BASE (+ evaluate) with the method's patch
    local base="$1" method="$2" list="'$CONFIGS/$1.json'"
    [ "$method" != disyre ] && list="$list,'$CONFIGS/$method.json'"
    echo "[$list]"
}

model_file() {  # the weights each method's inference loads: the released diffusion baselines keep the best
    case "$1" in  # validation L1 loss (model_best.pt), DISYRE and the LDM the final weights
        cddpm|pddpm|ddpm) echo model_best.pt ;;
        *) echo model.pt ;;
    esac
}

maps_args=()
for method in $METHODS; do
  for seed in $SEEDS; do
    name=$method
    [ "$SEEDS" != 0 ] && name="${method}_s$seed"
    model="$OUT/$name/models/$(model_file "$method")"
    [ "$method" = disyre ] && [ -n "${DISYRE_MODEL:-}" ] && model="$DISYRE_MODEL"
    if [ ! -f "$model" ]; then
        echo "== training $method (small preset, seed $seed) -> $OUT/$name"
        start=$(date +%s)
        # shellcheck disable=SC2086  # TRAIN_ARGS: extra overrides, word-split on purpose
        python -m monai.bundle run training --config_file "$(configs train "$method")" --output_dir "$OUT/$name" \
            --seed "$seed" --progress False ${TRAIN_ARGS:-}
        echo "$name: trained in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
    fi
    for split in validation test; do
        echo "== $name: anomaly maps of the $split split -> $OUT/maps_$name"
        start=$(date +%s)
        python -m monai.bundle run inference --config_file "$(configs inference "$method")" --model_path "$model" \
            --split "$split" --output_dir "$OUT/maps_$name" --overwrite True --progress False
        echo "$name: $split maps in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
    done
    maps_args+=("$name=$OUT/maps_$name")
  done
done

for protocol in $PROTOCOLS; do
    echo "== one report of every method, protocol $protocol -> $OUT/report_$protocol"
    disyre-monai evaluate "${maps_args[@]}" --protocol "$protocol" --calibration_split validation \
        --output_dir "$OUT/report_$protocol" --progress False | tee "$OUT/report_$protocol.txt"
done
echo "== tables"
cat "$OUT"/report_*.txt
[ "$SEEDS" = 0 ] && exit 0

python - "$OUT" "$PROTOCOLS" <<'PY'
"""Mean +- sample sd over the seeds (<method>_s<seed>) of each protocol's headline numbers, from the one report."""
import json
import re
import sys
from pathlib import Path

import numpy as np

out, protocols = Path(sys.argv[1]), sys.argv[2].split()
summary, lines = {}, []
for protocol in protocols:
    headline = json.loads((out / f"report_{protocol}" / "metrics.json").read_text())["headline"]
    groups = {}
    for name, values in headline.items():
        match = re.fullmatch(r"(.+)_s(\d+)", name)
        method, seed = (match.group(1), match.group(2)) if match else (name, None)
        groups.setdefault(method, {})[seed] = values
    metrics = list(next(iter(headline.values())))
    lines += [f"`{protocol}`: {' / '.join(metrics)} (mean +- sd over seeds; seedless methods: one value)", "",
              "| method | seeds | " + " | ".join(metrics) + " |", "| --- | --- |" + " --- |" * len(metrics)]
    summary[protocol] = {}
    for method, by_seed in groups.items():
        values = np.array([[v[m] for m in metrics] for v in by_seed.values()], dtype=float)
        mean = values.mean(0)
        sd = values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(metrics))
        seeds = [s for s in by_seed if s is not None]
        summary[protocol][method] = {"seeds": seeds, "per_seed": {str(s): v for s, v in by_seed.items()},
                                     "mean": dict(zip(metrics, mean.tolist())), "sd": dict(zip(metrics, sd.tolist()))}
        cells = [f"{m:.3f} +- {d:.3f}" if len(values) > 1 else f"{m:.3f}" for m, d in zip(mean, sd)]
        lines.append(f"| {method} | {', '.join(seeds) or 'none'} | " + " | ".join(cells) + " |")
    lines.append("")
(out / "seed_table.json").write_text(json.dumps(summary, indent=2))
(out / "seed_table.md").write_text("\n".join(lines))
print("\n".join(lines))
PY
