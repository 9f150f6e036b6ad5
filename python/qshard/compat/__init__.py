"""Drop-in replacements for other tools' APIs, backed by qshard's exact kernels.

    from qshard.compat import tensorflowjs as tfjs_compat
    tfjs_compat.install()      # tensorflowjs.{quantization,write_weights,read_weights} now run qshard
"""
