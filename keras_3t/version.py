"""keras-3t's version, the one place it is set (pyproject.toml reads it here).

Example:
>>> from keras_3t.version import __version__
>>> __version__
'0.1.0'
"""

__version__ = "0.1.0"
