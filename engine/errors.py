"""One exception hierarchy for everything a user can get wrong.

Every error the engine raises on purpose is an ``EngineError``; catching that one class is enough in a service.
The subclasses say which side is at fault: the model file, the graph it describes, or the inputs of one call.
"""


class EngineError(Exception):
    """Base class of every error lstm-engine raises on purpose."""


class ModelFileError(EngineError):
    """The model file is missing, truncated, corrupt, or not an lstm-engine file."""


class FormatVersionError(ModelFileError):
    """The model file was written by a newer (or unknown) version of the format."""


class UnsupportedModelError(EngineError):
    """The model uses an operator, attribute or configuration the engine does not support."""


class InvalidInputError(EngineError, ValueError):
    """A call's inputs are wrong: missing or unknown names, wrong rank, shape or dtype, bad sequence_lens."""


class ConversionError(EngineError):
    """A converter could not turn the source model into an lstm-engine model."""
