"""Keras models to tfjs layers models: `save_web_model`, and loading Keras files and objects.

rules.py says what tfjs-layers runs (every layer option translated, checked or refused),
topology.py translates model configs, load.py reads objects / .keras / .h5, convert.py writes.
"""
from qshard.keras.convert import save_web_model
from qshard.keras.load import keras_variables, load_keras_file

__all__ = ["keras_variables", "load_keras_file", "save_web_model"]
