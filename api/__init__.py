"""Everything that faces a user: settings, the HTTP service and the command line."""
