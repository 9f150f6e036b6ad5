# Sourced by .ci/sanitize and .ci/clang: build the C++ core alone into a temporary folder and lay
# out a package there (this checkout's Python files with that _core), for tests to import.
# Needs the virtual environment of .ci/run (numpy, pytest, hypothesis) to be active.

# Build tools, each installed only when missing (into the active environment).
python -c "import pybind11" 2>/dev/null || pip install -q pybind11
command -v cmake >/dev/null || pip install -q cmake
command -v ninja >/dev/null || pip install -q ninja

# build_core WORK [cmake options...]: builds WORK/build, fills WORK/site/qshard, sets $core_so.
build_core() {
  local work="$1"
  shift
  cmake -S . -B "$work/build" -G Ninja -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v python)" "$@" >/dev/null
  cmake --build "$work/build" >/dev/null
  core_so="$(ls "$work"/build/_core*.so)"
  mkdir -p "$work/site"
  cp -r python/qshard "$work/site/"
  rm -f "$work"/site/qshard/_core*.so
  cp "$core_so" "$work/site/qshard/"
}
