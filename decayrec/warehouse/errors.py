"""The warehouse's errors: which failures a retry of the Prefect task may fix, which not."""


class WarehouseError(RuntimeError):
    """A warehouse problem that a retry of the task would not fix."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be reached, after the configured retries."""


class WarehouseConnectionLost(RuntimeError):
    """The connection broke during an operation (rolled back by the server): transient, so
    the Prefect task retries it (tasks.retry_transient)."""


class InjectedFailure(WarehouseError):
    """Raised by a publish when `warehouse.fail_after_staging` is set (drills and tests)."""
