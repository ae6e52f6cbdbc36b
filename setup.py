"""The one compiled part: the audio input's JACK client (sjtui/audio/_jackinput.c).

Optional: without JACK's headers (libjack-jackd2-dev) or a compiler the build goes on without it
and the input uses PortAudio's JACK host API (sjtui.audio.jack_input.available() says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("sjtui.audio._jackinput", ["sjtui/audio/_jackinput.c"], libraries=["jack"], optional=True)
    ]
)
