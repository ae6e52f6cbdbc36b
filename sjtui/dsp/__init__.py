"""Signal analysis: pure vectorised numpy maths plus thin online wrappers.

- :mod:`sjtui.dsp.spectral`: causal framing, band layout, band energy and band flux kernels;
- :mod:`sjtui.dsp.onsets`: causal per-band onset picking;
- :mod:`sjtui.dsp.analysis`: ``analyze`` (offline) and ``OnlineAnalyzer`` (streaming), identical results;
- :mod:`sjtui.dsp.fingerprint`: the 4-bar guitar fingerprint built on the analysis frames.
"""
