//! Spore's HTTP example: a `wasi:http/proxy` component (built with `wstd`'s `http_server` macro).
//!
//! - `GET /` answers a greeting and prints `GET /` to stdout (one line per request);
//! - `GET /healthz` answers `ok` (the probe path `examples/apps/http-autoscaling.yaml` sets);
//! - `POST /echo` answers the request body;
//! - `GET /upstream` fetches the URL in the `UPSTREAM_URL` env var and answers its body;
//! - `GET /slow?ms=N` sleeps N milliseconds, then answers;
//! - `GET /trap` panics (the host answers 500), `GET /spin` loops forever (the host answers 504
//!   once its per-request timeout has passed), `GET /alloc?mb=N&ms=M` holds N MiB of memory for
//!   M milliseconds: these exist for the shim's tests.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    println!("{method} {path}");
    match (method.as_str(), path.as_str()) {
        ("GET", "/") => Ok(Response::new(greeting().into())),
        ("GET", "/healthz") => Ok(Response::new("ok\n".into())),
        ("POST", "/echo") => {
            let body = request.into_body();
            Ok(Response::new(body))
        }
        ("GET", "/upstream") => upstream().await,
        ("GET", "/slow") => slow(request.uri().query().unwrap_or_default()).await,
        ("GET", "/trap") => panic!("the /trap route panics on purpose"),
        ("GET", "/spin") => spin(),
        ("GET", "/alloc") => alloc(request.uri().query().unwrap_or_default()).await,
        _ => status(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn greeting() -> String {
    let name = std::env::var("GREETING_NAME").unwrap_or_else(|_| "world".to_string());
    format!("Hello, {name}, from a Wasm HTTP component on Spore!\n")
}

async fn upstream() -> Result<Response<Body>, Error> {
    let Ok(url) = std::env::var("UPSTREAM_URL") else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "UPSTREAM_URL is not set\n");
    };
    let request = Request::get(url).body(Body::empty())?;
    let mut response = Client::new().send(request).await?;
    let body = response.body_mut().bytes_contents().await?;
    Ok(Response::new(body.into()))
}

fn query_number(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse::<u64>().ok())
}

async fn slow(query: &str) -> Result<Response<Body>, Error> {
    let ms = query_number(query, "ms");
    let Some(ms) = ms else {
        return status(StatusCode::BAD_REQUEST, "expected ?ms=<milliseconds>\n");
    };
    wstd::task::sleep(Duration::from_millis(ms)).await;
    Ok(Response::new(format!("slept {ms} ms\n").into()))
}

/// Holds `mb` MiB (every page touched) for `ms` milliseconds.
async fn alloc(query: &str) -> Result<Response<Body>, Error> {
    let (Some(mb), ms) = (query_number(query, "mb"), query_number(query, "ms").unwrap_or(0)) else {
        return status(StatusCode::BAD_REQUEST, "expected ?mb=<MiB>[&ms=<milliseconds>]\n");
    };
    let held = vec![1u8; (mb as usize) << 20];
    if ms > 0 {
        wstd::task::sleep(Duration::from_millis(ms)).await;
    }
    let sum: u64 = held.iter().step_by(4096).map(|b| u64::from(*b)).sum();
    Ok(Response::new(format!("held {mb} MiB ({sum} pages)\n").into()))
}

/// Never returns: the host's per-request timeout must interrupt it.
fn spin() -> Result<Response<Body>, Error> {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn status(code: StatusCode, text: &str) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(code).body(text.into())?)
}
