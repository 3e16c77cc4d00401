"""hello, a wasi:http function in Python: every request gets a plain-text greeting that names
the method and path it was asked with.

componentize-py turns this module into a component that exports
wasi:http/incoming-handler@0.2.12 (the world `hello` in wit/world.wit); build.sh shows how. The
node serves it with a fresh instance per request: nothing here outlives its request.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def method_name(method) -> str:
    if isinstance(method, Method_Get):
        return "GET"
    # Method_Other carries its name; the other cases are named by their class.
    value = getattr(method, "value", None)
    if isinstance(value, str):
        return value
    return type(method).__name__.removeprefix("Method_").upper()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        text = f"hello from python: {method_name(request.method())} {path}\n".encode()
        headers = Fields.from_list(
            [
                ("content-type", b"text/plain; charset=utf-8"),
                ("content-length", str(len(text)).encode()),
            ]
        )
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(text)
        OutgoingBody.finish(body, None)
