"""The one place the keras_regx version lives."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
