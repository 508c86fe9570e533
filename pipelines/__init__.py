"""The two Beam pipelines (knowledge-base build, batch question answering) and the CLI."""
