"""Exception types that decide a job's exit code and the ``error_type`` of its final log line."""


class InvalidInputError(Exception):
    """The spec or the input data is wrong, so a retry with the same input fails again (exit code 2)."""


class JobTerminatedError(Exception):
    """The process received SIGTERM, for example because the Temporal activity was cancelled."""
