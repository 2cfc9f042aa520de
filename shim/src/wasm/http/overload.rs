//! What a container's HTTP server does past its connection cap (`SPORE_HTTP_MAX_CONNECTIONS`):
//! a connection beyond it gets a complete `503 Service Unavailable` with `Retry-After` and is
//! closed, so a flood of connections costs the shim a bounded number of descriptors and tasks
//! and the client learns why, instead of a reset or a hang.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The answer past the cap; the body says which limit it was.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain\r\n\
Content-Length: 44\r\n\
Connection: close\r\n\r\n\
spore: too many connections to this server\r\n";

/// Connections being refused at once; past this the server stops accepting until one is done,
/// and the kernel's listen backlog holds the rest.
const MAX_REFUSING: usize = 256;
/// How long a refusal waits for the client's request before closing anyway.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// The connection cap of one server.
pub struct ConnectionGate {
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
}

/// What to do with an accepted connection.
pub enum Admission {
    /// Serve it; the permit is its place under the cap until it closes.
    Serve(OwnedSemaphorePermit),
    /// Answer 503 and close (holds a refusal slot).
    Refuse(OwnedSemaphorePermit),
}

impl ConnectionGate {
    pub fn new(max_connections: usize) -> Self {
        ConnectionGate {
            open: Arc::new(Semaphore::new(max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// A place under the cap, or else a refusal slot, waiting for one when all
    /// [`MAX_REFUSING`] are taken (a refusal lasts at most twice [`REFUSAL_LINGER`]).
    pub async fn admit(&self) -> Admission {
        if let Ok(permit) = self.open.clone().try_acquire_owned() {
            return Admission::Serve(permit);
        }
        let slot = self.refusing.clone().acquire_owned().await;
        Admission::Refuse(slot.expect("the refusal semaphore is never closed"))
    }
}

/// Answers 503 on `stream` and closes it. The request is read first (up to a short linger), so
/// that closing does not reset the connection before the client reads the answer.
pub async fn refuse(mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let mut request = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, stream.read(&mut request)).await;
    if stream.write_all(REFUSAL).await.is_ok() {
        let _ = stream.shutdown().await;
        // Drain what the client still sends until it closes, briefly.
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            while matches!(stream.read(&mut request).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .expect("Content-Length");
        assert_eq!(body.len(), length);
        assert!(head.starts_with("HTTP/1.1 503 "));
    }

    #[tokio::test]
    async fn past_the_cap_connections_are_refused_and_then_wait() {
        let gate = ConnectionGate::new(2);
        let mut served = Vec::new();
        for _ in 0..2 {
            served.push(gate.admit().await);
        }
        assert!(served.iter().all(|a| matches!(a, Admission::Serve(_))));
        let mut refused = Vec::new();
        for _ in 0..MAX_REFUSING {
            refused.push(gate.admit().await);
        }
        assert!(refused.iter().all(|a| matches!(a, Admission::Refuse(_))));
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.admit()).await;
        assert!(
            waiting.is_err(),
            "all refusal slots taken: the next one waits"
        );
        drop(refused.pop());
        assert!(matches!(gate.admit().await, Admission::Refuse(_)));
        drop(served);
        assert!(matches!(gate.admit().await, Admission::Serve(_)));
    }
}
