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
#
# A method whose bundle patch is bundle/configs/<method>.json is trained with (ldm: both of its stages)
#   python -m monai.bundle run training --config_file "['bundle/configs/train.json','bundle/configs/<method>.json']"
# (DISYRE: train.json alone). Existing trained weights are kept (delete $OUT/<method> to retrain); the maps of a
# method are rewritten every run. Each method's report is in $OUT/report_<protocol>/ (metrics.json, per_case.csv,
# pr_curve.png with every method); the tables are printed at the end, every number labelled with its protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/compare}
METHODS=${METHODS:-"disyre cddpm pddpm ddpm ldm"}
PROTOCOLS=${PROTOCOLS:-"exact behrendt"}
CONFIGS=bundle/configs
mkdir -p "$OUT"

configs() {  # configs() BASE METHOD -> the --config_file list of BASE (+ evaluate) with the method's patch
    local base="$1" method="$2" list="'$CONFIGS/$1.json'"
    [ "$method" != disyre ] && list="$list,'$CONFIGS/$method.json'"
    echo "[$list]"
}

maps_args=()
for method in $METHODS; do
    model="$OUT/$method/models/model.pt"
    [ "$method" = disyre ] && [ -n "${DISYRE_MODEL:-}" ] && model="$DISYRE_MODEL"
    if [ ! -f "$model" ]; then
        echo "== training $method (small preset) -> $OUT/$method"
        start=$(date +%s)
        python -m monai.bundle run training --config_file "$(configs train "$method")" --output_dir "$OUT/$method"
        echo "$method: trained in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
    fi
    for split in validation test; do
        echo "== $method: anomaly maps of the $split split -> $OUT/maps_$method"
        start=$(date +%s)
        python -m monai.bundle run inference --config_file "$(configs inference "$method")" --model_path "$model" \
            --split "$split" --output_dir "$OUT/maps_$method" --overwrite True
        echo "$method: $split maps in $(( $(date +%s) - start )) s" | tee -a "$OUT/times.txt"
    done
    maps_args+=("$method=$OUT/maps_$method")
done

for protocol in $PROTOCOLS; do
    echo "== one report of every method, protocol $protocol -> $OUT/report_$protocol"
    disyre-monai evaluate "${maps_args[@]}" --protocol "$protocol" --calibration_split validation \
        --output_dir "$OUT/report_$protocol" --progress False | tee "$OUT/report_$protocol.txt"
done
echo "== tables"
cat "$OUT"/report_*.txt
