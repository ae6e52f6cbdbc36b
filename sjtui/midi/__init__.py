"""MIDI output: timed events from grooves, the scheduler thread, backends (rtmidi, JACK), kit maps.

Heavy modules (rtmidi, jack) are imported inside the backends that need them.
"""
