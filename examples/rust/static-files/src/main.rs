//! Spore's static-site example: a `wasi:http/proxy` component serving the files under
//! `--root DIR` (default `/site`; in `examples/apps/sidecar-configmap.yaml` a ConfigMap mounted
//! read-only), `index.html` for a directory. Every request appends `METHOD PATH STATUS` to
//! `/tmp/access.log` when `/tmp` is writable (the example shares it with a log-tailing sidecar).

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let response = if method == "GET" || method == "HEAD" {
        serve(&root(), &path)
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n")
    }?;
    log(&method, &path, response.status());
    Ok(response)
}

/// `--root DIR` from the args, else `/site`.
fn root() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--root")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/site"))
}

/// The file for a URL path under `root`; `None` for a path that leaves it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut file = root.to_path_buf();
    for component in Path::new(url_path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if file.is_dir() {
        file.push("index.html");
    }
    Some(file)
}

fn serve(root: &Path, url_path: &str) -> Result<Response<Body>, Error> {
    let Some(file) = resolve(root, url_path) else {
        return text(StatusCode::BAD_REQUEST, "bad path\n");
    };
    match std::fs::read(&file) {
        Ok(bytes) => Ok(Response::builder()
            .header("content-type", content_type(&file))
            .body(bytes.into())?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            text(StatusCode::NOT_FOUND, "not found\n")
        }
        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{err}\n")),
    }
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn log(method: &str, path: &str, status: StatusCode) {
    println!("{method} {path} {}", status.as_u16());
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/access.log")
    {
        let _ = writeln!(file, "{method} {path} {}", status.as_u16());
    }
}

fn text(code: StatusCode, body: &str) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.to_owned().into())?)
}
