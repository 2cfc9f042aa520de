//! A flood of 10,000 connections at one HTTP container of a pod: the container's connection cap
//! (`SPORE_HTTP_MAX_CONNECTIONS`) and its share of the instance pool
//! (`SPORE_HTTP_MAX_REQUESTS_IN_FLIGHT`) hold, every connection gets an HTTP answer (200, or
//! 503 with `Retry-After` naming which limit), containerd keeps getting answers from the shim
//! throughout, and a Wasm neighbour in the same pod keeps running.

mod cri_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cri_common::{CriFixture, http_addr, http_image, push_and_pull, wait_running};
use spore_e2e::ContainerSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 10_000;
const MAX_CONNECTIONS: usize = 300;
const MAX_REQUESTS: usize = 50;
const READY: Duration = Duration::from_secs(60);

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 503 past the connection cap.
    TooManyConnections,
    /// 503 past the requests-in-flight share.
    Busy,
    Other(u16),
    Silent,
}

/// One connection: a request that holds its instance for a while, and the answer's status.
async fn one_connection(addr: SocketAddr) -> Answer {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                b"GET /alloc?mb=0&ms=300 HTTP/1.1\r\nHost: flood\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let Ok(Ok(answer)) = tokio::time::timeout(Duration::from_secs(120), attempt).await else {
        return Answer::Silent;
    };
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry_after = text.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n");
    match status {
        200 => Answer::Ok,
        503 if retry_after && text.contains("too many connections") => Answer::TooManyConnections,
        503 if retry_after => Answer::Busy,
        0 => Answer::Silent,
        other => Answer::Other(other),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_connections_meet_the_caps_and_the_pod_stays_responsive() {
    let mut f = CriFixture::start(spore_e2e::ContainerdVersion::V2, false).await;
    let image = push_and_pull(&mut f, http_image(&["sleeper"]), "spore/flood").await;
    let pod = f.run_spore_pod("flood").await;
    let web = ContainerSpec::new("web", &image)
        .env("SPORE_HTTP_MAX_CONNECTIONS", &MAX_CONNECTIONS.to_string())
        .env(
            "SPORE_HTTP_MAX_REQUESTS_IN_FLIGHT",
            &MAX_REQUESTS.to_string(),
        )
        .memory_limit(256 << 20);
    let web = f.cri.run_container(&pod, &web).await.expect("web");
    let neighbour = ContainerSpec::new("neighbour", &image).command(["/sleeper.wasm"]);
    let neighbour = f
        .cri
        .run_container(&pod, &neighbour)
        .await
        .expect("neighbour");
    wait_running(&mut f.cri, &neighbour.id, READY).await;
    let addr = http_addr(&mut f.cri, &pod, READY).await;

    // The flood, and containerd asking the shim about the pod all along.
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            tasks.spawn(one_connection(addr));
        }
        let mut answers = Vec::with_capacity(CONNECTIONS);
        while let Some(answer) = tasks.join_next().await {
            answers.push(answer.unwrap_or(Answer::Silent));
        }
        answers
    });
    let mut slowest = Duration::ZERO;
    let mut asked = 0;
    while !flood.is_finished() {
        let asked_at = Instant::now();
        let status = f
            .cri
            .container_status(&web.id)
            .await
            .expect("ContainerStatus");
        f.cri
            .container_stats(&neighbour.id)
            .await
            .expect("ContainerStats");
        slowest = slowest.max(asked_at.elapsed());
        assert_eq!(status.state, cri_common::container_state::RUNNING);
        asked += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers = flood.await.expect("the flood's task");
    let count = |a: Answer| answers.iter().filter(|x| **x == a).count();
    let (ok, conns, busy) = (
        count(Answer::Ok),
        count(Answer::TooManyConnections),
        count(Answer::Busy),
    );
    let others: Vec<_> = answers
        .iter()
        .filter(|a| matches!(a, Answer::Other(_) | Answer::Silent))
        .collect();
    eprintln!(
        "{CONNECTIONS} connections in {:?}: {ok} answered 200, {conns} 503 (connections), \
         {busy} 503 (requests in flight); containerd asked {asked} times, slowest answer {slowest:?}",
        started.elapsed(),
    );
    assert!(
        others.is_empty(),
        "{} without a 200/503 answer: {:?}",
        others.len(),
        &others[..others.len().min(10)]
    );
    assert!(ok > 0, "some requests are served");
    assert!(conns > 0, "the connection cap refused some");
    assert!(busy > 0, "the requests-in-flight share refused some");

    // Afterwards: the server serves normally and the neighbour still runs.
    let answer = one_connection(addr).await;
    assert_eq!(answer, Answer::Ok);
    let status = f.cri.container_status(&neighbour.id).await.expect("status");
    assert_eq!(status.state, cri_common::container_state::RUNNING);
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
