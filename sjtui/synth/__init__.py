"""The built-in drum synth: FluidSynth with a GM SoundFont where installed, else numpy one-shots."""
