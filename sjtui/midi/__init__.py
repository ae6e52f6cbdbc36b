"""MIDI output: timed events from grooves, the scheduler thread, backends (rtmidi, JACK), kit maps.

How the pieces fit (heavy modules, rtmidi and jack, are imported inside the
backends that need them):

- :mod:`sjtui.midi.events`: ``groove_events(groove, tempo_map, at_bar, ...)``
  -> sorted array of :data:`~sjtui.midi.events.EVENT_DTYPE` (absolute
  samples); pure.
- :mod:`sjtui.midi.kits`: voice -> note maps (GM default; TD-17/27, Alesis,
  EZdrummer/Superior, Addictive Drums, SSD; user maps in ``kits.json``).
- :mod:`sjtui.midi.backends`: :class:`~sjtui.midi.backends.JackMidiBackend`
  (frame-exact, JACK frames are its samples; ``jack_midi_backend`` takes the same
  client with a C callback, :mod:`sjtui.midi.jack_out`, where it was built),
  :class:`~sjtui.midi.backends.RtMidiBackend` (ALSA / CoreMIDI / WinMM, or JACK
  with one-period rounding), ``open_backend``; :class:`sjtui.synth.backend.SynthBackend`
  renders to an audio output.
- :mod:`sjtui.midi.scheduler`: :class:`~sjtui.midi.scheduler.MidiScheduler`
  (``submit``, ``cancel_from``, ``set_tempo_map``, ``clock_start``,
  ``clock_stop``, ``panic``, ``stats``; a context manager) and
  ``install_signal_handlers``.
- :mod:`sjtui.midi.process`: :class:`~sjtui.midi.process.MidiProcess`, the same
  scheduler in a child process; use it when other Python threads are busy
  (the UI, analysis): in-process timing suffers from the GIL (figures in
  ``bench/timing.py``).
- :mod:`sjtui.midi.state`: the state file and the clean-up after a SIGKILL
  (``cleanup_stale`` runs at every scheduler start; ``cleanup_after(pid)``
  for a parent).
- :mod:`sjtui.midi.ports`: API choice (explicit > ``MIDO_BACKEND`` > platform:
  ALSA, else JACK when a server runs), port lists for ``sjtui devices``.

Timeline: events carry samples of the scheduler's clock. For the JACK and
synth backends that clock is the backend's frame counter (minus
``frame_offset``): give the backend the offset between the engine's audio
sample index and that counter. For rtmidi pass ``clock=`` mapping
``time.monotonic()`` onto the engine's sample index (the audio input's
``SampleClock``).
"""
