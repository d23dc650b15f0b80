"""Python client for the fewshot-service HTTP API: `Client` (sync), `AsyncClient`, typed models and errors, and
`fewshot_client.batch.classify_file` for resumable batch classification of CSV/JSONL files."""

from fewshot_client.async_client import AsyncClient
from fewshot_client.client import Client
from fewshot_client.errors import (
    Conflict,
    ConnectionFailed,
    FewshotError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from fewshot_client.retry import RetryPolicy

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "FewshotError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Unauthorized",
]
