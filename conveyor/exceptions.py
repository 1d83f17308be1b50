"""The one exception tree of conveyor.

    ConveyorError                  anything conveyor raises on purpose
    ├── PipelineDefinitionError    the pipeline is wrong before it runs (cycle, types, ids)
    ├── ArtifactError              an artifact is missing, partial or not what it claims
    ├── MetadataError              the metadata store cannot be opened or read
    │   ├── StoreLostError         ... or stopped taking a run's records after it began
    │   └── RunBusyError           ... or holds a run of the pipeline going, where one must run alone
    ├── ComponentError             a component's own code failed while it ran
    ├── DataValidationError        data broke the schema's rules
    ├── TransformError             preprocessing_fn cannot be traced, fitted or applied
    └── ServingError               a model cannot be loaded or served
        └── InvalidInputError      a request's data cannot be used (status 400)

Every message says what was wrong, where, and what to do; the CLI prints it on one line.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error conveyor raises on purpose; the CLI prints these on one line."""


class PipelineDefinitionError(ConveyorError):
    """The pipeline cannot run as written: a cycle, an unknown input, a type mismatch, ..."""


class ArtifactError(ConveyorError):
    """An artifact is missing, partial, or not of the type it claims."""


class MetadataError(ConveyorError):
    """The metadata store cannot be reached, opened or migrated."""


class StoreLostError(MetadataError):
    """The metadata store failed after a run began (its file gone, its server down): the run failed."""

    def __init__(self, msg: str, run_id: str | None = None) -> None:
        super().__init__(msg)
        self.run_id = run_id
        """The run that failed: its record may say running until someone ends it (``conveyor schedule`` does)."""


class RunBusyError(MetadataError):
    """A run that must run alone (``conveyor schedule``'s) did not begin: another run of its pipeline is going."""


class ComponentError(ConveyorError):
    """A component's own code raised while it ran."""


class DataValidationError(ConveyorError):
    """Data did not meet the schema's rules."""


class TransformError(ConveyorError):
    """``preprocessing_fn`` cannot be traced, fitted or applied; the message names the user's line."""


class ServingError(ConveyorError):
    """A model cannot be loaded or served."""


class InvalidInputError(ServingError):
    """A request's rows cannot be used: a required feature is missing, or a value is of the wrong type."""

    status = 400


class MissingExtraError(ConveyorError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""
