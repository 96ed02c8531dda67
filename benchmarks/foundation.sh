#!/usr/bin/env bash
# Benchmarks of the foundation scripts: 3 seeds per row, one run at a time (so SPS is clean).
# Each row runs in benchmarks/logs/{row}/ ; then benchmarks/summarize.py prints the table.
#   bash benchmarks/foundation.sh && python benchmarks/summarize.py --reach reinforce-CartPole-v1=475
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
row() {  # row NAME SCRIPT ARGS...
  local name=$1 script=$2; shift 2
  mkdir -p "benchmarks/logs/$name"
  for seed in 1 2 3; do
    (cd "benchmarks/logs/$name" && python "$root/algorithms/$script" --seed "$seed" "$@")
  done
}
row q_learning-FrozenLake-v1-deterministic q_learning.py --env-kwargs '{"is_slippery": false}' --total-timesteps 20000
row q_learning-FrozenLake-v1-slippery q_learning.py --total-timesteps 200000 --eval-episodes 1000
row q_learning-Taxi-v4 q_learning.py --env-id Taxi-v4 --total-timesteps 200000 --eval-episodes 100
row q_learning-CliffWalking-v1 q_learning.py --env-id CliffWalking-v1 --total-timesteps 50000
row reinforce-CartPole-v1 reinforce.py --env-id CartPole-v1 --total-timesteps 300000
row reinforce-CartPole-v1-no-baseline reinforce.py --env-id CartPole-v1 --total-timesteps 300000 --no-baseline
# A run's first B steps do not depend on its budget (no schedule), so these budgets show the greedy
# evaluation along one run per seed.
for budget in 100000 150000 200000 250000; do
  row "reinforce-CartPole-v1-budget-$budget" reinforce.py --env-id CartPole-v1 --total-timesteps $budget
done
# Acrobot: a near-random policy meets the goal in under 2% of episodes; REINFORCE learns nothing until it
# does (see benchmarks.md). 16 episodes per update give it more chances per update.
row reinforce-Acrobot-v1 reinforce.py --env-id Acrobot-v1 --total-timesteps 500000 --num-envs 16
