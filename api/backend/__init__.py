"""The model backend: connecting to it (or starting the embedded model) and pricing its tokens;
the tools offered to the workers, MCP servers' among them."""
