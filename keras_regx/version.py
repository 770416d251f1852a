"""The one place the keras_regx version lives."""

__version__ = "0.1.0.dev0"
