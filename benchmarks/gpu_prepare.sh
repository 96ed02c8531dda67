#!/usr/bin/env bash
# Prepares the GPU check (issue 24, part 3) here, before the one call to a lent GPU machine.
#
# That machine reaches no package registry, and its python3 (3.12) has PyTorch but neither Gymnasium, tyro,
# MuJoCo nor Stable-Baselines3. This script, run in the repository's root on this machine, puts what
# benchmarks/gpu_check.sh needs into two git-ignored folders that travel with the call:
#   .whl/lucid/    wheels for LucidRL and Stable-Baselines3 (gymnasium 1.4, MuJoCo 4, tyro, SB3 2.9.2)
#   .whl/cleanrl/  what CleanRL needs in other versions, found first on its path (gymnasium 0.29.1, which needs
#                  numpy < 2, and MuJoCo 3.1.6: the oldest MuJoCo with Python 3.12 wheels; Hopper-v4 runs on it)
#   .peers/cleanrl the CleanRL files the pairs run (commit fe8d8a0), from a checkout (CLEANRL_DIR, default
#                  ~/cleanrl; benchmarks/compare.py's docstring says how to make one)
# Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".peers"], timeout_s=540)
# With the working tree (about 7 MB) it stays under the 64 MiB a call may carry: about 59 MB in all.
#
# PYTHON_VERSION (default 3.12, the GPU machine's) picks the wheels' Python: 3.11 rehearses the check here.
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${PYTHON_VERSION:-3.12}"
cleanrl_dir="${CLEANRL_DIR:-$HOME/cleanrl}"
for folder in /.whl/ /.peers/; do
    grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
rm -rf .whl .peers

download() {  # download FOLDER REQUIREMENT...: wheels for the GPU machine's Python, none of their own needs
    local folder="$1"; shift
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version "$python_version" --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d ".whl/$folder" "$@"
}
# What the GPU machine lacks (its image holds torch, numpy 2, absl-py, etils, pandas, matplotlib, tensorboard,
# typing-extensions, rich): the requirements' versions, and the packages each of them needs in turn.
download lucid cloudpickle==3.1.3 farama-notifications==0.0.6 tyro==1.0.17 docstring-parser==0.18.0 \
    typeguard==4.6.1 glfw==2.11.0 pyopengl==3.1.10 gymnasium==1.4.0 mujoco==4.0.0 mujoco-core==4.0.0 \
    mujoco-studio==4.0.0 stable-baselines3==2.9.2 sb3-contrib==2.9.2
download cleanrl gymnasium==0.29.1 numpy==1.26.4 mujoco==3.1.6

if [ "$(git -C "$cleanrl_dir" rev-parse --short=7 HEAD)" != "fe8d8a0" ]; then
    echo "CleanRL at $cleanrl_dir is not at commit fe8d8a0 (see benchmarks/compare.py's docstring)" >&2
    exit 2
fi
mkdir -p .peers/cleanrl/cleanrl .peers/cleanrl/cleanrl_utils
for file in dqn.py ppo.py ppo_continuous_action.py sac_continuous_action.py td3_continuous_action.py \
            ddpg_continuous_action.py; do
    cp "$cleanrl_dir/cleanrl/$file" .peers/cleanrl/cleanrl/
done
cp "$cleanrl_dir/cleanrl_utils/__init__.py" "$cleanrl_dir/cleanrl_utils/buffers.py" .peers/cleanrl/cleanrl_utils/
du -sh .whl .peers
