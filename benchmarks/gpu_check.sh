#!/usr/bin/env bash
# Benchmark 11: the GPU check. On an NVIDIA machine, in at most --limit
# seconds (default 570, for a 10-minute slot):
#   1. installs advfit with its `gpu` extra (`pip install -e '.[gpu]'`: the
#      same TensorFlow plus NVIDIA's CUDA wheels) in a fresh venv;
#   2. checks that TensorFlow sees the GPU and runs an op on it;
#   3. runs the paper-scale slice (benchmarks/paper_scale.py --clock wall: paper 002 on
#      CIFAR-10, split 0, both regimes, the three attacks, the three metrics)
#      with large evaluation and attack batches, and prints the same per-rule
#      figures and extrapolation;
#   4. checks that every model job's log says it ran `on GPU`
#      (advfit.runtime.device.configure logs "TensorFlow <version> on GPU (...)").
#
#   bash benchmarks/gpu_check.sh                      # the GPU check
#   bash benchmarks/gpu_check.sh --cpu-dry            # the same steps on the CPU, no
#                                                     # install, a tiny slice: tests the script
# Options:
#   --limit S        time limit of the whole check in seconds (default 570)
#   --venv DIR       where to make the fresh venv (default /tmp/advfit-gpu-venv)
#   --wheels DIR     install offline from this folder of wheels (pip --no-index --find-links)
#   --python PY      skip the install: use this interpreter (it must have advfit[gpu])
#   --cifar DIR      CIFAR-10 python batches (default ../shared/data/cifar-10-batches-py)
#   --keep DIR       run the slice in DIR and keep it (default: a temporary folder)
#   anything after -- goes to benchmarks/paper_scale.py (e.g. -- --epochs 10)
# Exit status: 0 when every check passed; 1 otherwise (the failed check is named).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
LIMIT=570
VENV=/tmp/advfit-gpu-venv
WHEELS=""
PY=""
CIFAR="$REPO/../shared/data/cifar-10-batches-py"
WORK=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry) MODE=cpu-dry ;;
        --limit) LIMIT="$2"; shift ;;
        --venv) VENV="$2"; shift ;;
        --wheels) WHEELS="$2"; shift ;;
        --python) PY="$2"; shift ;;
        --cifar) CIFAR="$2"; shift ;;
        --keep) WORK="$2"; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done

START=$SECONDS
left() { echo $((LIMIT - (SECONDS - START))); }
fail() { echo "gpu_check: FAILED: $*" >&2; exit 1; }
step() { echo; echo "== [$((SECONDS - START)) s of $LIMIT] $*"; }

cd "$REPO"
[ -d "$CIFAR" ] || fail "no CIFAR-10 at $CIFAR (--cifar DIR)"

step "1. the machine and the install ($MODE)"
if [ "$MODE" = gpu ]; then
    command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: not an NVIDIA machine"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        || fail "nvidia-smi cannot talk to the driver"
    if [ -z "$PY" ]; then
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
        if [ -n "$WHEELS" ]; then PIP+=(--no-index --find-links "$WHEELS"); fi
        timeout "$(left)" "${PIP[@]}" -e ".[gpu]" || fail "pip install -e '.[gpu]'"
        PY="$VENV/bin/python"
    fi
else
    # No install on the CPU: the current environment (an advfit install) runs the steps.
    PY="${PY:-$(command -v python)}"
    export CUDA_VISIBLE_DEVICES=""
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
echo "python: $PY"

step "2. does TensorFlow see the GPU?"
ADVFIT_CHECK_MODE="$MODE" timeout "$(left)" "$PY" - <<'EOF' || fail "TensorFlow and the GPU"
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}, "
      f"GPUs: {[g.name for g in gpus]}")
if os.environ["ADVFIT_CHECK_MODE"] == "gpu":
    if not gpus:
        raise SystemExit("TensorFlow sees no GPU (CUDA wheels missing or driver too old?)")
    with tf.device("/GPU:0"):
        product = tf.linalg.matmul(tf.ones((256, 256)), tf.ones((256, 256)))
    assert "GPU" in product.device, product.device
    print(f"a matmul ran on {product.device}: {float(product[0, 0])}")
elif gpus:
    raise SystemExit("--cpu-dry but TensorFlow sees a GPU")
EOF

step "3. the paper-scale slice"
if [ "$MODE" = gpu ]; then
    # Large batches for the evaluation and the attacks; a longer slice than on 2 CPU cores.
    SLICE=(--epochs 5 --train all --attacked 1000 --metric-points 20 --cores 2
           --eval-batch 8192 --attack-batch 1024)
else
    SLICE=(--epochs 2 --train 2500 --attacked 20 --metric-points 2 --cores 2
           --eval-batch 4096 --attack-batch 512)
fi
if [ -z "$WORK" ]; then WORK="$(mktemp -d /tmp/advfit-gpu-check-XXXXXX)"; fi
echo "slice: ${SLICE[*]} ${EXTRA[*]:-}; in $WORK"
# Leave 20 s for the log check and the summary.
budget=$(( $(left) - 20 ))
[ "$budget" -gt 30 ] || fail "no time left for the slice (${budget} s; raise --limit)"
# On a GPU the jobs' cost is their wall time (CPU time does not see the GPU's work).
timeout "$budget" "$PY" benchmarks/paper_scale.py --cifar "$CIFAR" --workdir "$WORK" \
    --clock "$([ "$MODE" = gpu ] && echo wall || echo cpu)" \
    "${SLICE[@]}" "${EXTRA[@]}" || fail "the paper-scale slice (exit $?; kept $WORK)"

step "4. did every model job run on the $([ "$MODE" = gpu ] && echo GPU || echo CPU)?"
WANT="on GPU ("
[ "$MODE" = gpu ] || WANT="on CPU ("
n_jobs=0
bad=()
while IFS= read -r -d '' log; do
    n_jobs=$((n_jobs + 1))
    line="$(grep -m1 "TensorFlow .* on " "$log" || true)"
    echo "  ${log#"$WORK"/results/logs/}: ${line#* INFO }"
    case "$line" in *"$WANT"*) ;; *) bad+=("$log") ;; esac
done < <(find "$WORK/results/logs" -type f \( -name 'train_model.log' \
    -o -name 'craft_adversarial_set_*.log' -o -name 'evaluate_snapshots.log' \
    -o -name 'compute_robustness_metrics.log' \) -print0 | sort -z)
[ "$n_jobs" -gt 0 ] || fail "no model job logs under $WORK/results/logs"
[ "${#bad[@]}" -eq 0 ] || fail "${#bad[@]} of $n_jobs model jobs did not log '$WANT': ${bad[*]}"
echo "all $n_jobs model jobs logged '$WANT...)'"

step "done: every check passed in $((SECONDS - START)) s ($MODE)"
