#!/usr/bin/env bash
# The model card's figures, through the product: `usema predict` on the validation split, then `usema evaluate`.
# Usage: weights/recipe/evaluate.sh nuclei|polyps [MODEL] [usema predict options...]
#   MODEL defaults to the bundled model of that name; outputs go to ${EVAL_DIR:-../runs/eval}/NAME/.
#   NAMES=FILE scores other images than the validation split (e.g. training images, to see the fit).
#   Predict options pass through: --scales 1 runs polyps in one pass instead of its stored multi-scale TTA.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=$1
model=${2:-$what}
shift $(($# > 1 ? 2 : 1))
case $what in
  nuclei) data=../shared/data/microscopy ext=tif score=(--exclude-border) ;;  # also the challenge's border rule
  polyps) data=../shared/data/endoscopy ext=jpg score=() ;;
  *) echo "usage: $0 nuclei|polyps [MODEL] [predict options]" >&2 && exit 2 ;;
esac
out=${EVAL_DIR:-../runs/eval}/$what
rm -rf "$out" && mkdir -p "$out"
names=${NAMES:-weights/splits/${what}_val.txt}  # NAMES: another list, e.g. part of the training split
usema predict $(sed -e '/^#/d' -e "s|^|$data/images/|; s|\$|.$ext|" "$names") --model "$model" --out "$out" "$@" 2>/dev/null
usema evaluate --pred "$out" --truth "$data/masks" --names "$names" "${score[@]}" --json "$out.json" --overwrite | tail -n 5
