"""sjtui: a terminal jam partner that listens to a guitar and drums along.

Importing the package is cheap on purpose: no numpy-heavy modules, no
onnxruntime, no Textual and never torch. Subpackages load what they need.
"""

__version__ = "0.1.0"
