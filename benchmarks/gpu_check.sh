#!/usr/bin/env bash
# The GPU check (issue 24, part 3), as one call to a lent GPU machine. Prepare it here first:
#     bash benchmarks/gpu_prepare.sh
# then, with the device tool (its working tree is this checkout; the wheels and CleanRL's files travel):
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".peers"], timeout_s=540)
# It installs the wheels, then
#   1. benchmarks/gpu_smoke.py: every deep script's --cuda path (runs, saves weights on the GPU, resumes);
#   2. benchmarks/compare.py on the GPU: the pairs in PAIRS below, LucidRL beside CleanRL, one process at a
#      time (both sides take the GPU by default: `--cuda` is on in both), into compare_gpu.csv / .md.
# Everything lands in $OUT (the device tool brings it back): gpu.txt, smoke.md, compare_gpu.csv,
# compare_gpu.md and log.txt. Copy compare_gpu.* into benchmarks/results/ and smoke.md beside them as
# gpu_smoke.md, and name both in full.toml's speed appendix (its fragments) so that benchmarks.md includes them.
#
# PAIRS (names from `python benchmarks/compare.py --list-pairs`) and SMOKE (0 skips step 1) are environment
# variables; the default pairs are the three LeanRL's published GPU gains are for (SAC 5.7x, TD3 3.4x,
# PPO-continuous 2.7x over CleanRL) and take about 7 minutes of the 10 a call may last, with the smoke.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
pairs="${PAIRS:-sac-pendulum-cleanrl td3-pendulum-cleanrl ppo_continuous-hopper-cleanrl}"
python="$(command -v python3)"

for side in lucid cleanrl; do
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "/tmp/site_$side" .whl/$side/*.whl || { echo "could not install .whl/$side: run gpu_prepare.sh"; exit 2; }
done
# CleanRL's interpreter: the same Python with gymnasium 0.29.1, numpy 1.26 and MuJoCo 3.1.6 first on its path,
# then the rest it needs (tyro, ...) from LucidRL's, then CleanRL's checkout (compare.py sets that one)
cat > /tmp/python-cleanrl <<EOF
#!/bin/sh
PYTHONPATH="/tmp/site_cleanrl:/tmp/site_lucid\${PYTHONPATH:+:\$PYTHONPATH}" exec "$python" "\$@"
EOF
chmod +x /tmp/python-cleanrl
export PYTHONPATH=/tmp/site_lucid MUJOCO_GL=egl PYTHONUNBUFFERED=1 WANDB_MODE=offline

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} | tee "$out/gpu.txt"

if [ "${SMOKE:-1}" != 0 ]; then
    "$python" benchmarks/gpu_smoke.py --markdown "$out/smoke.md"
fi
for pair in $pairs; do  # one pair at a time: a pair that fails leaves the others' rows
    "$python" benchmarks/compare.py --pairs "$pair" --cleanrl-dir "$PWD/.peers/cleanrl" \
        --cleanrl-python /tmp/python-cleanrl --sb3-python "$python" --results-dir "$out" --table-name compare_gpu \
        --no-render || echo "failed: $pair"
done
