#!/usr/bin/env bash
# Install everything the test suite needs, so that `python -m pytest` then runs every test with
# nothing skipped:  bash tests/setup.sh && python -m pytest
#
# Into the active Python environment (use a virtual environment: python3 -m venv .venv && . .venv/bin/activate):
# - qshard from this checkout (built here; or the wheel named by QSHARD_WHEEL, as .ci/run does) with
#   the test, keras, eval and convert extras: pytest, hypothesis, h5py, safetensors, playwright,
#   matplotlib, scikit-learn, TensorFlow (Keras 3, TFLite, the graph converter) and tf_keras (the
#   Keras 2 models the tests convert);
# - the official tensorflowjs 4.22 converter WITHOUT its dependencies (they would pull in an older
#   TensorFlow): the tests load its quantization and weight files as the bit-for-bit reference;
# - stock @tensorflow/tfjs 4.22 for Node and the browser (npm ci --prefix tests/js), and the real
#   published graph models the accuracy tests run: @vladmandic/human 3.3.6's models/ (a devDependency
#   pinned by sha512 in tests/js/package-lock.json; 28.6 MB download, 43 MB installed, ~1 s of npm ci);
# and on the machine, with apt-get as root (or through sudo): Node.js and npm if missing, and
# Debian's chromium for the browser tests (playwright drives it; its own browser download is unused).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --upgrade pip >/dev/null
python -m pip install "${QSHARD_WHEEL:-.}[test,keras,eval,convert]"
python -m pip install --no-deps tensorflowjs==4.22.0

apt_install() {  # apt_install COMMAND PACKAGE...: the packages, unless COMMAND is already on PATH
  local command="$1"
  shift
  command -v "$command" >/dev/null && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "tests/setup.sh: $command is missing; as root run: apt-get install $*" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "$@" >/dev/null
}

apt_install npm nodejs npm
npm ci --prefix tests/js --no-audit --no-fund
apt_install chromium chromium
chromium --version
python -c "import qshard; print('qshard', qshard.__version__, 'from', qshard.__file__, '- isa', qshard.isa())"
