"""Redis: connection settings, the embedded local server, index schema and catalog."""
