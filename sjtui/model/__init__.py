"""The two-tower model at run time: fixed input layout, ONNX encoders, manifest checks.

- :mod:`sjtui.model.inputs`: the fixed-size input tensors of both towers,
  pure numpy, shared with ``training/`` so training and the app compute
  identical inputs;
- :mod:`sjtui.model.manifest`: the manifest format (written by
  ``training/export.py``, read and checked here);
- :mod:`sjtui.model.runtime`: onnxruntime sessions (imported lazily, one
  thread), :class:`~sjtui.model.runtime.EncoderPair`, :func:`~sjtui.model.runtime.best_grooves`
  and :func:`~sjtui.model.runtime.load_model` with fallback to the shipped model;
- :mod:`sjtui.model.reference`: reference windows stored with a model and
  the embeddings it gave them at export (regression guard);
- :mod:`sjtui.model.fit`: tempo (8 %, half/double time) and meter filters.

Nothing here imports torch. Importing this package imports nothing heavy.
"""
