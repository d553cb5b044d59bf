#!/usr/bin/env bash
# The GPU check: a short script for a machine with a GPU and no internet, within a 10-minute
# window. It runs a release binary built elsewhere (cargo build --release --features vulkan,
# or --features vulkan,cuda where CUDA builds) and prints, for each GPU device of that binary:
#   - images/s of the BYOL step of ResNet-18 (CIFAR, 32x32) and ResNet-50 (224x224) at batch
#     256 in f32 and bf16 (f16 where the device has no bf16 arithmetic: Vulkan, Metal), with
#     peak device memory;
#   - the main job (ssl train --modality vision) on the GPU, when the CIFAR-10 archive is given.
# Every command has a time limit: with one device it ends within 10 minutes (the benches take
# far less than their limits on a GPU). It exits 1 when any check failed.
#
# Usage: scripts/gpu_check.sh [SSL_BINARY] [CIFAR10_TAR_GZ]
#   SSL_BINARY      default target/release/ssl
#   CIFAR10_TAR_GZ  default $SSL_TEST_DATA/cifar10-jpeg.tar.gz; the main job is skipped without it
# Environment: DEVICES (default "vulkan:0 cuda:0": the first discrete GPU through Vulkan, so
#   that Mesa's software driver is never measured by mistake, and CUDA's first; those the
#   binary lacks are skipped, and said; name one for a 10-minute window), STEPS (timed steps
#   per workload, default 10), BATCH (default 256).
set -uo pipefail

bin="${1:-target/release/ssl}"
data="${2:-${SSL_TEST_DATA:-../shared/data}/cifar10-jpeg.tar.gz}"
steps="${STEPS:-10}"
batch="${BATCH:-256}"
# Mesa and wgpu want a runtime folder.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

if [ ! -x "$bin" ]; then
  echo "gpu_check: no ssl binary at $bin (build one: cargo build --release --features vulkan)" >&2
  exit 1
fi

echo "== machine"
date -u
lscpu | grep -m1 "Model name" || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || true
"$bin" --version


# Why a command failed: "timed out after N s" for timeout's 124, else its exit status and the
# last lines it printed.
failure() {
  local rc="$1" limit="$2" output="$3"
  if [ "$rc" -eq 124 ]; then
    echo "(timed out after $limit s)"
  else
    echo "(failed: exit $rc)"
    tail -n 3 <<<"$output"
  fi
}

fail=0

# The step workloads on $1 in precision $2; prints the table, returns 3 when the device lacks
# the type.
bench_step() {
  local device="$1" precision="$2" output
  echo "== $device, $precision: BYOL step, batch $batch, $steps timed steps"
  output=$(timeout 110 "$bin" bench --device "$device" --precision "$precision" \
    --workloads step-resnet18-cifar,step-resnet50-imagenet --batch "$batch" --steps "$steps" 2>&1)
  local rc=$?
  if grep -q "has no $precision arithmetic" <<<"$output"; then
    grep -m1 '^error:' <<<"$output"
    return 3
  fi
  grep -v "^step-.*: batch" <<<"$output"
  if [ $rc -ne 0 ]; then
    failure "$rc" 110 "$output"
    fail=1
  fi
}

for device in ${DEVICES:-vulkan:0 cuda:0}; do
  # One short step proves the device opens (a binary without it says so in one line); its
  # header names the device.
  probe=$(timeout 90 "$bin" bench --device "$device" --workloads step-smallcnn --batch 8 --steps 1 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    if grep -q '^error:' <<<"$probe"; then
      echo "== $device: skipped: $(grep -m1 '^error:' <<<"$probe")"
    else
      echo "== $device: skipped: $(failure "$rc" 90 "$probe")"
      fail=1
    fi
    continue
  fi
  echo "== $device: $(grep -m1 '^ssl bench' <<<"$probe")"
  for precision in f32 bf16; do
    bench_step "$device" "$precision"
    # A device without bf16 arithmetic (Vulkan): mixed precision in f16 instead.
    [ $? -eq 3 ] && [ "$precision" = bf16 ] && bench_step "$device" f16
  done
  if [ -f "$data" ]; then
    echo "== $device: the main job (ssl train --modality vision)"
    out=$(mktemp -d)
    start=$(date +%s)
    output=$(timeout 180 "$bin" train --modality vision --data "$data" --device "$device" \
      --out "$out/run" --no-progress 2>&1)
    rc=$?
    tail -n 6 <<<"$output"
    echo "(wall $(( $(date +%s) - start )) s)"
    if [ $rc -ne 0 ]; then
      failure "$rc" 180 "$output"
      fail=1
    fi
    rm -rf "$out"
  else
    echo "== $device: main job skipped: no CIFAR-10 archive at $data"
  fi
done
exit $fail
