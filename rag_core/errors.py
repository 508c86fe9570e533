"""One root exception for the package, with specific subclasses.

The CLI turns any ``BeamRagError`` into one clear message (its ``str``) and a
non-zero exit code; anything else is a bug and shows a traceback.
"""


class BeamRagError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(BeamRagError, ValueError):
    """A setting or argument is invalid; the message says which and why."""


class RedisUnavailableError(BeamRagError):
    """Redis cannot be reached (after bounded retries)."""


class RedisRefusedError(BeamRagError):
    """Redis answered a command with an error no retry can fix (out of memory, cannot persist ...)."""


class RedisPermissionError(BeamRagError):
    """The Redis user may not run a command or touch a key the job needs (an ACL)."""


class LocalRedisError(BeamRagError):
    """The embedded local Redis server cannot be started, stopped or found."""


class IndexNotFoundError(BeamRagError):
    """The named index (alias) does not exist in Redis."""


class PublishRefusedError(BeamRagError):
    """A rebuilt index version was not published (empty, shrunk, or incomplete)."""


class ModelMismatchError(BeamRagError):
    """The embedding model asked for does not match the one the index was built with."""


class ModelNotAvailableError(BeamRagError):
    """A model cannot be loaded (not packaged locally and the hub is offline)."""


class TemplateError(BeamRagError, ValueError):
    """A prompt template is missing variables or cannot be read."""


class BuildInProgressError(BeamRagError):
    """Another build holds the knowledge base's build lease."""
