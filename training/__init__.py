"""Training of the two-tower model (PyTorch; needs the ``train`` extra).

- :mod:`training.features`: encoder inputs as torch tensors, built by the
  same code the app uses (:mod:`sjtui.model.inputs`);
- :mod:`training.towers`: the guitar and groove towers, checkpoints;
- :mod:`training.export`: ONNX export with a numeric parity check against
  torch, and the manifest the runtime checks.

``training`` may import ``sjtui``; nothing under ``sjtui`` imports this.
"""
