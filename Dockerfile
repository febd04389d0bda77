# Image that runs this pipeline's components on Kubeflow Pipelines 2.x / Vertex AI Pipelines:
#   docker build -t gcr.io/MY_PROJECT/tfx-vision-pipeline:1.0 . && docker push gcr.io/MY_PROJECT/tfx-vision-pipeline:1.0
#   python -m pipeline compile --config configs/digits_cnn.yaml --target kubeflow-v2 \
#       --image gcr.io/MY_PROJECT/tfx-vision-pipeline:1.0 --output pipeline.json ...
# UNTESTED: the machines this repo is developed on have no Docker engine (see docs/scale.md).
# The custom components (DatasetExampleGen, AnomaliesGate, HeldOutEvaluator, AtomicPusher) and
# the Transform/Trainer module functions are imported from this repo, so the image contains it.
# Debian 12 + Python 3.11, like the development machines the pins were measured on.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/pipeline TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /pipeline

# Same two stages as `make setup` (why: requirements-nodeps.txt). The KFP launcher inside the
# container needs kfp-pipeline-spec, so the kfp pins must be in requirements.txt.
COPY requirements.txt requirements-nodeps.txt ./
RUN python -m pip install pip==24.3.1 \
 && python -m pip install -r requirements.txt \
 && python -m pip install --no-deps -r requirements-nodeps.txt

# Beam's SDK harness, so the same image can be the worker image of Dataflow / Flink / Spark
# (--sdk_container_image); KFP ignores the ENTRYPOINT because it sets each task's command.
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam

COPY . .
RUN python -c "import components.tfx_compat as c; c.check_stack()" \
 && useradd --create-home --uid 10001 pipeline \
 && mkdir -p /pipeline/runs && chown -R pipeline /pipeline/runs /opt/apache/beam
# Not root; relative paths of a config (runs/...) resolve under /pipeline; Beam's boot stages
# artifacts under /opt/apache/beam.
USER pipeline
# Beam workers start the boot program; KubeflowV2DagRunner overrides it with its own command
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...).
ENTRYPOINT ["/opt/apache/beam/boot"]
