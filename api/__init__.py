"""Everything that serves the engine: settings and the command line here; HTTP, the run service,
storage, the model backend and telemetry in a folder each."""
