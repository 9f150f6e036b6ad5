"""qshard tflite: TFLite files in every mode, with their sizes."""
from __future__ import annotations

import os


def run(args) -> int:
    from qshard import tflite
    from qshard.formats.summary import gzipped_size
    modes = list(tflite.MODES) if args.modes == "all" else [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in tflite.MODES]
    if bad:
        raise ValueError(f"--modes: unknown mode(s) {', '.join(bad)} (modes: {', '.join(tflite.MODES)})")
    if not os.path.exists(args.model):
        raise tflite.TFLiteError(f"{args.model}: no such file or folder")
    calibration = tflite.load_inputs(args.calibration) if args.calibration else None
    paths = tflite.write(args.model, args.output, modes, calibration, force=args.force,
                         inputs=[args.calibration] if args.calibration else [])
    print(f"{'mode':<10} {'bytes':>12} {'gzip':>12}  file")
    for mode, path in paths.items():
        print(f"{mode:<10} {path.stat().st_size:>12,} {gzipped_size(path):>12,}  {path}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "tflite", help="convert a Keras model or SavedModel to TFLite in each mode; print the sizes",
        description="Convert a Keras 3 model (.keras) or a SavedModel folder with the TFLite converter in the "
                    "modes float32, dynamic (dynamic-range int8 weights), float16, int8 (full integer) and "
                    "int16x8, writing OUT/model.<mode>.tflite, and print each file's size and gzip size. The "
                    "int8 and int16x8 modes calibrate on --calibration. Needs TensorFlow "
                    "(pip install \"qshard[tflite]\").")
    parser.add_argument("model", metavar="MODEL", help="a .keras file or a SavedModel folder")
    parser.add_argument("output", metavar="OUT", help="folder for the .tflite files (must not exist unless --force)")
    parser.add_argument("--modes", default="all", help="comma-separated modes, or 'all' (default)")
    parser.add_argument("--calibration", metavar="NPY", help="representative inputs: .npy, or .npz (array 'x')")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(run=run)
