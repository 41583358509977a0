"""FlowCatalyst core: the whole routing engine, dependency-free, for MicroPython and CPython.

    from flowcatalyst.core import Router, MemoryQueue, RouterConfig, PoolConfig, QueueConfig

See the README ("The core's API") for an example; each module documents its part.
"""

__version__ = "0.1.0"

from .breaker import BreakerRegistry, BreakerSettings, CircuitBreaker
from .classify import (
    Outcome,
    classify_response,
    classify_transport_error,
    parse_retry_after,
    retry_delay,
)
from .config import ConfigError, PoolConfig, QueueConfig, RouterConfig, parse_router_config
from .configsync import ConfigSync, ConfigSyncError, fetch_config, merge_configs
from .httpclient import HttpClient, TransportError
from .mediator import HttpMediator, build_request
from .memqueue import DeadLetter, MemoryQueue, QueueFull
from .message import BLOCK_ON_ERROR, IMMEDIATE, NEXT_ON_ERROR, Message, MessageError, parse_message
from .pool import ProcessPool
from .ports import ConsumerStopped, PublishResult, QueuedMessage, ReceiptHandleError
from .ratelimit import RateLimiter, TokenBucket
from .router import Router, RouterSettings
from .semaphore import FifoSemaphore
from .signing import sign, sign_standard, verify, verify_standard
from .warnings import WarningService

__all__ = [
    "BLOCK_ON_ERROR",
    "IMMEDIATE",
    "NEXT_ON_ERROR",
    "BreakerRegistry",
    "BreakerSettings",
    "CircuitBreaker",
    "ConfigError",
    "ConfigSync",
    "ConfigSyncError",
    "ConsumerStopped",
    "DeadLetter",
    "FifoSemaphore",
    "HttpClient",
    "HttpMediator",
    "MemoryQueue",
    "Message",
    "MessageError",
    "Outcome",
    "PoolConfig",
    "ProcessPool",
    "PublishResult",
    "QueueConfig",
    "QueueFull",
    "QueuedMessage",
    "RateLimiter",
    "ReceiptHandleError",
    "Router",
    "RouterConfig",
    "RouterSettings",
    "TokenBucket",
    "TransportError",
    "WarningService",
    "build_request",
    "classify_response",
    "classify_transport_error",
    "fetch_config",
    "merge_configs",
    "parse_message",
    "parse_retry_after",
    "parse_router_config",
    "retry_delay",
    "sign",
    "sign_standard",
    "verify",
    "verify_standard",
]
