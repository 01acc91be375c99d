# statjob images. Two targets:
#
#   docker build --target cpu  -t statjob:cpu  .   # Debian slim, SimpleGo backend
#   docker build --target cuda -t statjob:cuda .   # NVIDIA CUDA base, XLA + the CUDA PJRT plugin
#
# Both run statjob as the entrypoint in /opt/statjob, next to data/ (the
# spec's default data.dir) and examples/. A batch task runs e.g.
#   statjob run --config gs://bucket/statjob/submit/<run>/spec.yaml --run-id <run>
# See infra/README.md for pushing the images and submitting jobs.

ARG GO_VERSION=1.26.8
# jax's CUDA 12 PJRT plugin and the NVIDIA libraries it loads, as pip wheels
# (the newest CUDA 12 release when this was written). Its PJRT C API must be
# one go-xla (GoMLX v0.26.0) accepts: not yet checked on a GPU, see
# infra/README.md. CUDA 12 wheels need an NVIDIA driver >= 525 on the host.
ARG JAX_VERSION=0.12.0.1

# ---- build: the statjob binary (cgo: go-xla loads PJRT plugins with dlopen)
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/statjob . \
 && /out/statjob version

# ---- files: what both images add to their base
FROM scratch AS files
COPY --from=build /out/statjob /usr/local/bin/statjob
COPY data/ /opt/statjob/data/
COPY examples/ /opt/statjob/examples/

# ---- cpu: Debian slim with the binary, data/ and examples/
FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=files / /
WORKDIR /opt/statjob
# SIGTERM reaches statjob directly (exec form): it finishes in-flight work
# within job.grace and exits 75, which the batch retry policies retry.
ENTRYPOINT ["statjob"]
CMD ["--help"]

# ---- plugin: the CUDA PJRT plugin and its NVIDIA libraries, installed with
# pip into one folder. The plugin finds the libraries through its RUNPATH
# ($ORIGIN/../../nvidia), so the folder is copied whole.
FROM python:3.12-slim-bookworm AS plugin
ARG JAX_VERSION
RUN pip install --no-cache-dir --target /opt/jax "jax-cuda12-plugin[with_cuda]==${JAX_VERSION}" \
 && test -f /opt/jax/jax_plugins/xla_cuda12/xla_cuda_plugin.so \
 && test -f /opt/jax/nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc \
 && test -x /opt/jax/nvidia/cuda_nvcc/bin/ptxas

# ---- cuda: NVIDIA's CUDA base (driver hooks for the container runtime) with
# the binary, the plugin and its libraries
FROM nvidia/cuda:12.8.1-base-ubuntu24.04 AS cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*
COPY --from=plugin /opt/jax /opt/jax
# GoMLX's XLA backend with this plugin (never downloaded at run time). XLA
# needs libdevice and ptxas from a CUDA directory: pip's cuda_nvcc. go-xla's
# own guess of that directory is wrong here, and its nvidia/ layout check
# assumes its installer, so both are set.
ENV GOMLX_BACKEND=xla:/opt/jax/jax_plugins/xla_cuda12/xla_cuda_plugin.so \
    XLA_FLAGS=--xla_gpu_cuda_data_dir=/opt/jax/nvidia/cuda_nvcc \
    PATH=/opt/jax/nvidia/cuda_nvcc/bin:$PATH \
    GOPJRT_CUDA_CHECKS=0 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=files / /
WORKDIR /opt/statjob
ENTRYPOINT ["statjob"]
CMD ["--help"]
