"""The model backend: connecting to it (or starting the embedded model) and pricing its tokens."""
