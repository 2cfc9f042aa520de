//! Every task request is answered, even when handling it panics.
//!
//! ttrpc runs each request in a task of its own; a panic there ends the task and nothing answers
//! the request, so containerd (and the kubelet behind it) waits for an answer that never comes.
//! [`PanicAnswered`] wraps the Task service: each request's handling goes through [`answered`],
//! which catches a panic at the request's edge and turns it into an `INTERNAL` error naming the
//! request and the panic's message; the panic itself is in the shim's log
//! ([`crate::host::panic_log`]). The shim goes on serving its other containers.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use containerd_shim::TtrpcResult;
use containerd_shim::protos::api;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;

use crate::error::ShimError;

pin_project_lite::pin_project! {
    /// `inner`, with a panic in its `poll` returned as `Err` (the future is not polled again).
    struct CatchPanic<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(answer)) => Poll::Ready(Ok(answer)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// `handling`'s answer to the task request `request`, or an `INTERNAL` error if it panicked.
pub async fn answered<T>(
    request: &'static str,
    handling: impl Future<Output = TtrpcResult<T>>,
) -> TtrpcResult<T> {
    match (CatchPanic { inner: handling }).await {
        Ok(answer) => answer,
        Err(payload) => {
            let err = ShimError::Panicked {
                request,
                message: crate::host::panic_log::payload_text(payload.as_ref()),
            };
            tracing::error!(%err, "a task request panicked");
            Err(err.into())
        }
    }
}

/// A Task service whose every request is [`answered`], panic or not.
pub struct PanicAnswered<T>(pub T);

/// Each Task method of [`PanicAnswered`]: the inner service's, through [`answered`].
macro_rules! answered_methods {
    ($($method:ident: $request:ty => $response:ty, $name:literal;)*) => {
        #[async_trait]
        impl<T: Task + Send + Sync> Task for PanicAnswered<T> {
            $(
                async fn $method(
                    &self,
                    ctx: &TtrpcContext,
                    req: $request,
                ) -> TtrpcResult<$response> {
                    answered($name, self.0.$method(ctx, req)).await
                }
            )*
        }
    };
}

answered_methods! {
    state: api::StateRequest => api::StateResponse, "State";
    create: api::CreateTaskRequest => api::CreateTaskResponse, "Create";
    start: api::StartRequest => api::StartResponse, "Start";
    delete: api::DeleteRequest => api::DeleteResponse, "Delete";
    pids: api::PidsRequest => api::PidsResponse, "Pids";
    pause: api::PauseRequest => api::Empty, "Pause";
    resume: api::ResumeRequest => api::Empty, "Resume";
    checkpoint: api::CheckpointTaskRequest => api::Empty, "Checkpoint";
    kill: api::KillRequest => api::Empty, "Kill";
    exec: api::ExecProcessRequest => api::Empty, "Exec";
    resize_pty: api::ResizePtyRequest => api::Empty, "ResizePty";
    close_io: api::CloseIORequest => api::Empty, "CloseIO";
    update: api::UpdateTaskRequest => api::Empty, "Update";
    wait: api::WaitRequest => api::WaitResponse, "Wait";
    stats: api::StatsRequest => api::StatsResponse, "Stats";
    connect: api::ConnectRequest => api::ConnectResponse, "Connect";
    shutdown: api::ShutdownRequest => api::Empty, "Shutdown";
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::ttrpc::{self, Code};

    #[tokio::test]
    async fn a_panic_while_handling_is_an_internal_error_naming_request_and_message() {
        let answer: TtrpcResult<()> = answered("Create", async {
            tokio::task::yield_now().await;
            panic!("the table is {}", "gone");
        })
        .await;
        match answer {
            Err(ttrpc::Error::RpcStatus(status)) => {
                assert_eq!(status.code(), Code::INTERNAL);
                assert!(
                    status.message.contains("Create")
                        && status.message.contains("the table is gone"),
                    "{}",
                    status.message
                );
            }
            other => panic!("expected an INTERNAL status, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_answer_without_a_panic_passes_through() {
        assert_eq!(answered("State", async { Ok(7) }).await.ok(), Some(7));
        let err = answered::<()>("State", async {
            Err(ShimError::NotFound("c1".into()).into())
        })
        .await;
        assert!(matches!(err, Err(ttrpc::Error::RpcStatus(s)) if s.code() == Code::NOT_FOUND));
    }
}
