#!/usr/bin/env bash
# Regenerates everything under crds/, charts/chronik/crds/ and manifests/operator/ from the
# Rust types (crdgen) and the Helm chart. These files are never edited by hand; the CRD drift
# test and the chart tests fail when they are stale.
#
#   PYTHON=/path/to/venv/bin/python operator/generate.sh
# PYTHON must have operator/tests/chart/requirements.txt installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
crd=crds/chronikclusters.chronik.io.yaml

mkdir -p crds charts/chronik/crds manifests/operator
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cargo run --quiet -p chronik-operator --bin crdgen > "$tmp"
mv "$tmp" "$crd"
cp "$crd" "charts/chronik/$crd"
"$python" operator/tests/chart/render.py manifests/operator
echo "generated $crd, charts/chronik/$crd, manifests/operator/"
