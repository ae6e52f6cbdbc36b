"""Tempo, meter and the bar grid: the timebase, the tempo sources and the transport.

- :mod:`sjtui.transport.timebase`: pure conversions sample <-> seconds <->
  beats <-> bars <-> steps <-> MIDI ticks over a :class:`TempoMap`; onset
  placement with input latency (:func:`onsets_to_grid`); :class:`SampleClock`.
- :mod:`sjtui.transport.transport`: :class:`Transport`, fed by commands and
  publishing :class:`TransportSnapshot` values.
- :mod:`sjtui.transport.midi_clock`, :mod:`sjtui.transport.tap`,
  :mod:`sjtui.transport.tempo_estimate`: the sources.

Import the submodules (this package does not import numpy by itself).
"""
