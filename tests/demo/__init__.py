"""The recordings of ``make demo`` (docs/demo.gif, docs/demo.webm, docs/demo-ask.gif): tooling that
drives the service against the scripted backend, not tests."""
