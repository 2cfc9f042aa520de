//! Waiting for the cluster: poll a check until it holds, bounded, and say what was last seen.

use std::time::Duration;

use super::ClusterError;

/// What one look at the cluster found: done with a value, or not yet (and what it shows).
pub enum Look<T> {
    Done(T),
    NotYet(String),
}

/// Calls `look` every `every` until it reports [`Look::Done`] or `timeout` passes. An API error
/// ends the wait at once.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut look: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Look<T>, ClusterError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match look().await? {
            Look::Done(value) => return Ok(value),
            Look::NotYet(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_returns_the_value_once_done() {
        let mut calls = 0;
        let value = until(
            "three calls",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                let now = calls;
                async move {
                    Ok(if now >= 3 {
                        Look::Done(now)
                    } else {
                        Look::NotYet(format!("call {now}"))
                    })
                }
            },
        )
        .await
        .expect("done");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn a_wait_times_out_with_what_it_last_saw() {
        let err = until::<(), _, _>(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Ok(Look::NotYet("still pending".into())) },
        )
        .await
        .expect_err("times out");
        assert_eq!(
            err.to_string(),
            "never did not happen within 30ms; last seen: still pending"
        );
    }
}
