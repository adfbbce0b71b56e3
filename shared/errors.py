"""Typed errors that cross the port boundaries."""


class ChatJobsError(Exception):
    """Base class for the service's own errors."""


class LLMError(ChatJobsError):
    def __init__(self, message: str, *, provider: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code


class TransientLLMError(LLMError):
    """Worth retrying or falling back: 429, 5xx, timeout, connection failure, open circuit.
    `retry_after_s` is how long the provider asked us to wait (its Retry-After), if it said."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code)
        self.retry_after_s = retry_after_s


class PermanentLLMError(LLMError):
    """Retrying will not help: 400-class request errors, blocked prompts, bad credentials."""


class QueueUnavailable(ChatJobsError):
    """The queue could not take the job; the API answers 503."""


class StoreFull(ChatJobsError):
    """The store has no room for a write (its disk or its size limit is full); nothing of the
    write was kept. The API answers 503 (`store_full`)."""


class NotFound(ChatJobsError):
    """No such job or batch for this tenant."""

    SHOWN_CHARS = 64

    def __init__(self, subject_id: str) -> None:
        shown = subject_id[: self.SHOWN_CHARS] + ("…" if len(subject_id) > self.SHOWN_CHARS else "")
        super().__init__(f"{shown} was not found")
        self.subject_id = subject_id


class Conflict(ChatJobsError):
    """The request conflicts with the resource's state (e.g. cancelling a running job)."""


class InvalidWebhookUrl(ChatJobsError):
    """The webhook URL is malformed or points at a refused address."""


class InvalidCursor(ChatJobsError):
    """A pagination cursor this store did not make."""


class InvalidPeriod(ChatJobsError):
    """A usage period that cannot be read (from after to, or too long); `fields` names the
    parameters at fault."""

    def __init__(self, message: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.fields = fields


class Overloaded(ChatJobsError):
    """More work is waiting than the service accepts (MAX_QUEUED_JOBS); the API answers 503."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownModel(ChatJobsError):
    """A requested model this deployment does not serve; `field` names the request field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class KeyLimitExceeded(ChatJobsError):
    """A run-time API key's limit refuses the request (429); `retry_after_s`: when it may
    succeed again."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(retry_after_s, 1)


class BudgetExceeded(KeyLimitExceeded):
    """The key's monthly request or token budget has no room for the request
    (429 `budget_exceeded`); it resets at the start of the next UTC month."""


class KeyRateLimited(KeyLimitExceeded):
    """The key's rpm, tpm or max_in_flight refuses the request for now (429 `rate_limited`)."""


class QuotaExceeded(TransientLLMError):
    """No call was made: the provider's shared quota (calls or tokens per minute) has no room,
    or the provider is paused after a 429, for `retry_after_s`. `providers`: every provider
    that was refused this way (the primary and the fallback, when both were)."""

    def __init__(self, message: str, *, provider: str, retry_after_s: float,
                 providers: tuple[str, ...] = ()) -> None:  # fmt: skip
        super().__init__(message, provider=provider, retry_after_s=retry_after_s)
        self.retry_after_s: float = retry_after_s
        self.providers = providers or (provider,)
