"""`qshard mixed` on tfjs layers models: per-tensor uint8 against the search alone, with cross-layer
equalization, with bias correction, and with both, every candidate run in stock tfjs (Node).

Models: keras.applications MobileNetV2 (alpha 0.5, 96 px, weights=None: nothing downloaded) whose
batch norms get statistics spread as trained ones are (variances log-uniform over 1e-3..30, gamma
in proportion to their square roots), written
by `qshard convert --to layers`, on random images; and any layers model folders given with --model
(e.g. nsfwjs's, unpacked by benchmarks/real_models.py), on made-up inputs.

    python benchmarks/layers_mixed.py --work /tmp/layers-bench [--model DIR ...] [--backend wasm]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from qshard.accuracy.tfjs_runner import TfjsRunner
from qshard.accuracy.web_data import Samples, load_samples, synthesize
from qshard.accuracy.web_eval import evaluate_web_model
from qshard.layers.mixed import search_layers_model

SETTINGS = {"search": {}, "+equalize": {"equalize": True}, "+bias": {"bias_correction": True},
            "+both": {"equalize": True, "bias_correction": True}}


def mobilenet_v2(work: Path) -> tuple:
    """The MobileNetV2 layers model and 8 random images for it."""
    import keras
    from qshard.keras.convert import save_web_model
    rng = np.random.default_rng(3)
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.5, weights=None,
                                           classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            var = 10 ** rng.uniform(-3, 1.5, n)
            layer.moving_variance.assign(var.astype(np.float32))
            layer.moving_mean.assign((rng.normal(0, 1, n) * np.sqrt(var)).astype(np.float32))
            # gamma / sqrt(var) stays near 1, as training keeps it: a random net with gains of 30 per
            # layer amplifies float32 rounding itself to a cosine of 0.99 (checked: not useful here)
            layer.gamma.assign((rng.uniform(0.5, 1.5, n) * np.sqrt(var)).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.3, n).astype(np.float32))
    folder = work / "mobilenet_v2"
    save_web_model(model, folder, force=True)
    np.savez(work / "mobilenet_v2.npz", input_layer=rng.uniform(-1, 1, (8, 96, 96, 3)).astype(np.float32))
    return folder, work / "mobilenet_v2.npz"


def main() -> None:
    """Print one row per model and setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--backend", default="wasm")
    parser.add_argument("--min-cosine", type=float, default=0.999)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    models = [mobilenet_v2(args.work)] + [(m, None) for m in args.model]
    print(f"{'model':16} {'uint8 cos':>9} {'setting':10} {'cosine':>8} {'x uint8':>7} {'runs':>5} {'s':>6}")
    with TfjsRunner(args.backend) as runner:
        for folder, data in models:
            info = runner.load(folder)
            samples: Samples = load_samples(data, info) if data else synthesize(info, 4)
            runner.unload(folder)
            table = evaluate_web_model(folder, variants=["uint8"], runner=runner, samples=samples)
            base = table.rows[0].fidelity.worst_cosine
            for name, options in SETTINGS.items():
                start = time.perf_counter()
                r = search_layers_model(folder, args.work / "out", samples, min_cosine=args.min_cosine, runner=runner,
                                        force=True, **options)
                print(f"{folder.name[:16]:16} {base:9.4f} {name:10} {r.cosine:8.5f} {r.bytes / r.uint8_bytes:7.2f} "
                      f"{r.evaluations:5d} {time.perf_counter() - start:6.0f}", flush=True)


if __name__ == "__main__":
    main()
