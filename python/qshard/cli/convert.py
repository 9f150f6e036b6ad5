"""qshard convert: Keras models to tfjs layers models."""
from __future__ import annotations

from qshard.cli.common import dtype_flags, say


def run(args) -> int:
    from qshard.keras.convert import save_web_model
    report = save_web_model(args.input, args.output, uint8=args.uint8, uint16=args.uint16, float16=args.float16,
                            keep=args.keep, shard_size=args.shard_size, force=args.force)
    say(report, args.output, args.quiet)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "convert", help="convert a Keras model (.keras, or tf_keras .h5) to a tfjs layers model",
        description="Write a Keras 3 model (.keras) or a Keras 2 / tf_keras model (.h5) as a TensorFlow.js "
                    "layers model that stock tfjs-layers 4.22 loads: the topology translated to the Keras 2 form "
                    "tfjs reads, weights named as tfjs builds them and quantized per the patterns (over names "
                    "such as 'dense/kernel'). A layer or option tfjs-layers cannot compute as Keras does is an "
                    "error naming the layer and the option. .keras files need Keras 3 (pip install "
                    "\"qshard[keras]\"); .h5 files only h5py.",
        epilog="example: qshard convert model.keras web_model --uint8 --keep 'dense_2/*'")
    parser.add_argument("input", metavar="MODEL", help="a .keras file (Keras 3) or a whole-model .h5 (Keras 2 / tf_keras)")
    parser.add_argument("output", metavar="OUT", help="output folder (must not exist unless --force)")
    dtype_flags(parser, "weights to keep as float32")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary")
    parser.set_defaults(run=run)
