import os

import numpy as np
import pytest

import qshard
from qshard import reference
from support.keras import import_keras
from support.node import JS_DIR, node_problem

ISAS = qshard.available_isas()
SIMD_ISAS = [isa for isa in ISAS if isa != "serial"]

# Lengths around every vector width the kernels use (8, 16, 32 lanes) and the thread split.
LENGTHS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000,
           4093, 4094, 4095, 4096, 4097, 4098, 4099, (1 << 20) + 3]


@pytest.fixture(params=ISAS)
def isa(request):
    return request.param


def require(problem: str, env: str, what: str) -> None:
    """What a test needs from outside the project (the reference converter, node, a browser, Keras):
    nothing when problem is empty; else a loud skip, or a failure when the variable env is set (CI)."""
    if problem:
        if os.environ.get(env):
            pytest.fail(f"{env} is set but {problem}")
        pytest.skip(f"SKIPPING {what}: {problem} ({env}=1 makes this a failure)")


@pytest.fixture(scope="session")
def tfjs_quantization():
    """tensorflowjs 4.22's quantization.py, the official behaviour qshard must match."""
    try:
        return reference.load("quantization")
    except reference.ReferenceUnavailable as error:
        require(str(error), "QSHARD_REQUIRE_REFERENCE", "COMPARISON WITH THE OFFICIAL CONVERTER")


def distributions(rng, n):
    """Named float32 arrays of length n that stress different parts of the kernels."""
    ties = np.round(rng.standard_normal(n) * 40) / 2  # many exact .5 multiples
    return {
        "normal": rng.standard_normal(n),
        "uniform": rng.uniform(-3, 7, n),
        "positive": rng.uniform(1000.0, 1000.5, n),
        "negative": -rng.exponential(2.0, n) - 0.25,
        "constant": np.full(n, 0.375),
        "ties": ties,
        "huge": rng.standard_normal(n) * 1e37,
        "tiny": rng.standard_normal(n) * 1e-38,
        "subnormal": rng.standard_normal(n) * 1e-42,
        "narrow": 1.0 + rng.uniform(0, 1e-6, n),
        "sparse": np.where(rng.random(n) < 0.9, 0.0, rng.standard_normal(n)),
    }


def as_f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


@pytest.fixture(scope="session")
def node():
    path, problem = node_problem()
    if problem:
        require(f"{problem}: cannot run the TensorFlow.js client. Install Node.js (>= 18) and the "
                f"client with `npm ci --prefix tests/js`", "QSHARD_REQUIRE_NODE", "THE JAVASCRIPT CLIENT TESTS")
    return path


JS_NODE_MODULES = str(JS_DIR / "node_modules")
# Every tfjs run of the tests (in this process and in the qshard commands it starts) uses the
# project's own tests/js install, also when qshard is installed from a wheel, where the runner's
# fallback to a source checkout's tests/js does not exist.
os.environ.setdefault("QSHARD_TFJS_NODE_MODULES", JS_NODE_MODULES)


def start_tfjs_runner(backend: str = "cpu", **options):
    """A stock tfjs worker (Node) on the project's own tests/js install; a loud skip without Node or
    the packages (`npm ci --prefix tests/js`), a failure under QSHARD_REQUIRE_NODE=1."""
    from qshard.accuracy.tfjs_runner import TfjsRunner
    from qshard.errors import TfjsUnavailableError
    try:
        return TfjsRunner(backend, node_modules=JS_NODE_MODULES, **options)
    except TfjsUnavailableError as error:
        require(f"{error} (install with `npm ci --prefix tests/js`)", "QSHARD_REQUIRE_NODE",
                "RUNNING WEB MODELS IN TFJS")


@pytest.fixture(scope="session")
def tfjs_runner():
    """One tfjs worker (cpu backend) shared by the tests that run web models."""
    runner = start_tfjs_runner("cpu")
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def keras():
    """Keras 3, or a loud skip (a failure under QSHARD_REQUIRE_KERAS)."""
    module, problem = import_keras()
    require(problem, "QSHARD_REQUIRE_KERAS", "THE KERAS TESTS")
    return module
