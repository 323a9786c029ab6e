"""Bearer-token authentication for the gRPC server.

Clients send the metadata ``authorization: Bearer TOKEN``; a refusal's details say what was wrong
without naming any program's flags (``missing bearer token``): a client says how to send one. The
token file (`detect.config.read_tokens`) holds one token per line (blank lines and lines starting
with ``#`` ignored), so a token can be rotated by adding the new one, moving clients over, then
removing the old one and restarting. The health service stays open so that load balancers and
Kubernetes probes need no token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

OPEN_METHODS_PREFIX = "/grpc.health.v1.Health/"


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid bearer token with UNAUTHENTICATED.

    ``on_denied(method)`` is called for each refused call (for metrics).
    """

    def __init__(self, tokens: list[str], on_denied: Callable[[str], None]) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._on_denied = on_denied

    def _valid(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> tuple[bool, str]:
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            return False, "missing bearer token"
        value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False, "malformed authorization: not a bearer token"
        # compare against every token, always, so timing says nothing about which one is close
        matches = [hmac.compare_digest(token.strip().encode(), t) for t in self._tokens]
        if not any(matches):
            return False, "invalid bearer token"
        return True, ""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_METHODS_PREFIX):
            return handler
        ok, reason = self._valid(handler_call_details.invocation_metadata)
        if ok:
            return handler
        self._on_denied(method)
        return _denying_handler(handler, reason)


def _denying_handler(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""

    async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
