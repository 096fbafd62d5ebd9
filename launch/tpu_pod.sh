#!/bin/bash
# Pretraining on a Cloud TPU VM pod slice: the same command on every host.
#
#   launch/tpu_pod.sh create  my-tpu us-central2-b v4-64
#   launch/tpu_pod.sh setup   my-tpu us-central2-b            # copies this checkout, installs vatt
#   launch/tpu_pod.sh run     my-tpu us-central2-b configs/pretrain.py:mbs gs://bucket/runs/mbs [flags]
#   launch/tpu_pod.sh delete  my-tpu us-central2-b
#
# Every host runs vatt.main; TPU_WORKER_HOSTNAMES lists more than one host, so vatt.main calls
# jax.distributed.initialize(), which discovers the slice by itself. Use a gs:// workdir so all
# hosts write checkpoints to the same place. Each host reads only its share of the batch.
set -euo pipefail
ACTION=${1:?usage: launch/tpu_pod.sh create|setup|run|delete NAME ZONE ...}
NAME=${2:?TPU name}
ZONE=${3:?zone}
shift 3

case "${ACTION}" in
  create)
    TYPE=${1:?accelerator type, e.g. v4-64}
    gcloud compute tpus tpu-vm create "${NAME}" --zone="${ZONE}" \
        --accelerator-type="${TYPE}" --version=tpu-ubuntu2204-base
    ;;
  setup)
    gcloud compute tpus tpu-vm scp --recurse --zone="${ZONE}" --worker=all \
        "$(cd "$(dirname "$0")/.." && pwd)" "${NAME}":~/vatt
    gcloud compute tpus tpu-vm ssh "${NAME}" --zone="${ZONE}" --worker=all --command \
        "cd ~/vatt && python3 -m venv ~/venv && ~/venv/bin/pip install -q 'jax[tpu]' . "
    ;;
  run)
    CONFIG=${1:?config, e.g. configs/pretrain.py:mbs}
    WORKDIR=${2:?workdir, e.g. gs://bucket/runs/mbs}
    shift 2
    # --command is one string that each host's shell splits again: quote every argument for it,
    # so an override such as --config.model.video.patch_size=(4,16,16) or a path with spaces
    # reaches vatt.main as the one argument it was here.
    ARGS=$(printf ' %q' "--config=${CONFIG}" "--workdir=${WORKDIR}" "$@")
    gcloud compute tpus tpu-vm ssh "${NAME}" --zone="${ZONE}" --worker=all --command \
        "cd ~/vatt && ~/venv/bin/python -m vatt.main${ARGS}"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "${NAME}" --zone="${ZONE}" --quiet
    ;;
  *)
    echo "unknown action ${ACTION}: use create, setup, run or delete" >&2
    exit 2
    ;;
esac
