"""The compiled parts: the JACK clients whose process callbacks are C, so that no Python runs in
JACK's real-time thread: the audio input (sjtui/audio/_jackinput.c) and the MIDI output
(sjtui/midi/_jackmidi.c).

Optional: without JACK's headers (libjack-jackd2-dev) or a compiler the build goes on without
them; the input then uses PortAudio's JACK host API and the MIDI output JACK-Client's Python
callback (sjtui.audio.jack_input.available() and sjtui.midi.jack_out.available() say which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"sjtui.{name}",
            [f"sjtui/{name.replace('.', '/')}.c"],
            depends=["sjtui/_jackclient.h"],
            libraries=["jack"],
            optional=True,
        )
        for name in ("audio._jackinput", "midi._jackmidi")
    ]
)
