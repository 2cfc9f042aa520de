"""Spore's Python HTTP example: a `wasi:http/proxy` handler written against the WASI types.

- `GET /` answers a greeting (the `GREETING_NAME` environment variable);
- `POST /echo` answers the request body;
- `GET /trap` raises (the host answers 500);
every request prints `METHOD PATH` to stdout.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import environment, streams
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io streams write at most 4096 bytes per blocking call.
CHUNK = 4096


def method_name(method) -> str:
    if isinstance(method, Method_Get):
        return "GET"
    if isinstance(method, Method_Post):
        return "POST"
    return type(method).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    data = bytearray()
    while True:
        try:
            data += stream.blocking_read(CHUNK)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise
    stream.__exit__(None, None, None)
    return bytes(data)


def respond(out: ResponseOutparam, status: int, body: bytes, content_type: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", content_type)]))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    stream = outgoing.write()
    for start in range(0, len(body), CHUNK):
        stream.blocking_write_and_flush(body[start : start + CHUNK])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(outgoing, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = method_name(request.method())
        path = (request.path_with_query() or "/").split("?", 1)[0]
        print(f"{method} {path}", flush=True)
        if method == "GET" and path == "/":
            name = dict(environment.get_environment()).get("GREETING_NAME", "world")
            text = f"Hello, {name}, from a Python HTTP component on Spore!\n"
            respond(response_out, 200, text.encode(), b"text/plain")
        elif method == "POST" and path == "/echo":
            content_type = b"application/octet-stream"
            for key, value in request.headers().entries():
                if key.lower() == "content-type":
                    content_type = value
            respond(response_out, 200, read_body(request), content_type)
        elif path == "/trap":
            raise RuntimeError("the /trap route raises on purpose")
        else:
            respond(response_out, 404, b"not found\n", b"text/plain")
