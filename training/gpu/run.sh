#!/usr/bin/env bash
# Meta-train several configs at once on one GPU machine that has torch + transformers but no internet
# (stage first with `python -m training.gpu.stage`). Usage, from the repository root there:
#   OUT=/some/dir training/gpu/run.sh training/configs/gpu-clinc.yaml:'{"outer_lr": 5e-5, "name": "gpu-clinc-lr5e-5"}' training/configs/gpu-mix.yaml
# Each argument is CONFIG[:JSON overrides]. Logs, summaries and the best runs' encoder tensors land in $OUT
# (training/gpu/pack.py); bring them back and rebuild a service checkpoint with training/gpu/import_run.py.
set -euo pipefail
: "${OUT:?set OUT to the folder for results}"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p /tmp/data
for f in .devcarry/data/*.xz; do xz -dc "$f" > "/tmp/data/$(basename "$f" .xz)"; done
python3 -m training.gpu.stage --unpack .devcarry/encoder /tmp/encoder
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
threads=$(( $(nproc) / $# )); [ "$threads" -ge 1 ] || threads=1
names=()
for spec in "$@"; do
  config="${spec%%:*}"; extra="{}"; [ "$spec" != "$config" ] && extra="${spec#*:}"
  name=$(python3 -c "import json,sys,yaml; c=yaml.safe_load(open(sys.argv[1])); c.update(json.loads(sys.argv[2])); print(c['name'])" "$config" "$extra")
  names+=("$name")
  overrides=$(python3 -c "import json,sys; o=json.loads(sys.argv[1]); o.update(encoder_source='/tmp/encoder', data_dir='/tmp/data', run_dir='runs/'+sys.argv[2]+'/run'); print(json.dumps(o))" "$extra" "$name")
  OMP_NUM_THREADS=$threads python3 -m app.meta.cli meta-train --config "$config" --set "$overrides" --quiet > "runs-$name.log" 2>&1 &
done
wait || true
python3 -m training.gpu.pack --out "$OUT" --keep "${KEEP:-2}" "${names[@]}"
