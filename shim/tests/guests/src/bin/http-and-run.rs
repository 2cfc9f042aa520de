//! An HTTP server built as a binary (`#[wstd::http_server]` in a `bin`): it exports
//! `wasi:cli/run` next to `wasi:http/incoming-handler`, as such servers do unless built as
//! libraries. The shim must serve it as HTTP. Answers `GET /` with `served as http`.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new("served as http\n".into()))
}
