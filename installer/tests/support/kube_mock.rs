//! A Kubernetes API stand-in built on tower-test's mock service: it records each request and
//! answers node PATCHes with a Node object (or with the status code it is told to).

#![allow(dead_code)]

use http::{Request, Response};
use kube::client::Body;

/// One request the installer made.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub content_type: String,
    pub body: serde_json::Value,
}

/// A client plus the task that serves `answers.len()` requests, answering each with the given
/// status code, and returns what it saw.
pub fn serve(answers: Vec<u16>) -> (kube::Client, tokio::task::JoinHandle<Vec<Seen>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        let mut seen = Vec::new();
        for code in answers {
            let (request, send) = handle
                .next_request()
                .await
                .expect("the installer called the API");
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let name = uri
                .split('?')
                .next()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            // The node as the API server would return it: a null in a merge patch deletes.
            let labels: serde_json::Map<String, serde_json::Value> = body["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let answer = if code == 200 {
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": labels}
                })
            } else {
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "message": format!("nodes \"{name}\" not found"), "reason": "NotFound", "code": code
                })
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response");
            send.send_response(response);
            seen.push(Seen {
                method,
                uri,
                content_type,
                body,
            });
        }
        seen
    });
    (kube::Client::new(service, "default"), task)
}
