"""Running the scripts of tests/js in Node with stock @tensorflow/tfjs."""
import json
import shutil
import subprocess
from pathlib import Path


JS_DIR = Path(__file__).resolve().parents[1] / "js"


TFJS_VERSION = "4.22.0"


NODE_TIMEOUT = 300


def node_problem():
    node = shutil.which("node")
    if node is None:
        return None, "`node` is not on PATH"
    package = JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    if not package.is_file():
        return None, f"{package.parent} is missing"
    version = json.loads(package.read_text()).get("version")
    if version != TFJS_VERSION:
        return None, f"{package.parent} is version {version}, these tests need {TFJS_VERSION}"
    return node, ""


def run_node(node, script, args):
    """Run a script of tests/js; returns an error text, or '' when it succeeded."""
    try:
        done = subprocess.run([node, str(JS_DIR / script), *map(str, args)], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"node {script} took more than {NODE_TIMEOUT} s"
    if done.returncode != 0:
        return f"node {script} exited with {done.returncode}:\n{done.stderr.strip()}\n{done.stdout.strip()}"
    return ""


def run_batched(node, script, jobs):
    """jobs: {key: [args...]} -> {key: error text or ''}. One node process for all of them; if it
    fails, each job again alone so the failure is charged to the model that caused it."""
    if not jobs:
        return {}
    error = run_node(node, script, [a for args in jobs.values() for a in args])
    if not error:
        return {key: "" for key in jobs}
    return {key: run_node(node, script, args) for key, args in jobs.items()}
