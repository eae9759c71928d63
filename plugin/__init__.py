"""The facecast daemon side: CLI, configuration, audio input, render pipeline, scheduling."""
