//! Task events for containerd. Every event the shim raises goes through one [`EventSink`]; the
//! real one, [`ForwardedEvents`], puts them on one channel that one task forwards to containerd's
//! event service, each delivered before the next, so they reach containerd in the order they were
//! raised (TaskCreate, TaskStart, TaskExit, TaskDelete of a container never overtake each other),
//! and the shim's end waits until they are delivered. Tests hold a recording sink.

use std::time::Duration;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::{self, Message, well_known_types::any::Any};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Client, EventsClient};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::util;
use tokio::sync::{mpsc, watch};

/// One event of the Task API, as containerd's `events.task` messages.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Create(TaskCreate),
    Start(TaskStart),
    Exit(TaskExit),
    Delete(TaskDelete),
    ExecAdded(TaskExecAdded),
    ExecStarted(TaskExecStarted),
    Paused(TaskPaused),
    Resumed(TaskResumed),
}

impl TaskEvent {
    pub fn topic(&self) -> &'static str {
        match self {
            TaskEvent::Create(_) => topics::TASK_CREATE_EVENT_TOPIC,
            TaskEvent::Start(_) => topics::TASK_START_EVENT_TOPIC,
            TaskEvent::Exit(_) => topics::TASK_EXIT_EVENT_TOPIC,
            TaskEvent::Delete(_) => topics::TASK_DELETE_EVENT_TOPIC,
            TaskEvent::ExecAdded(_) => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskEvent::ExecStarted(_) => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskEvent::Paused(_) => topics::TASK_PAUSED_EVENT_TOPIC,
            TaskEvent::Resumed(_) => topics::TASK_RESUMED_EVENT_TOPIC,
        }
    }

    /// The event's protobuf message name, the `type_url` containerd reads it by.
    pub fn type_name(&self) -> &'static str {
        match self {
            TaskEvent::Create(_) => "containerd.events.TaskCreate",
            TaskEvent::Start(_) => "containerd.events.TaskStart",
            TaskEvent::Exit(_) => "containerd.events.TaskExit",
            TaskEvent::Delete(_) => "containerd.events.TaskDelete",
            TaskEvent::ExecAdded(_) => "containerd.events.TaskExecAdded",
            TaskEvent::ExecStarted(_) => "containerd.events.TaskExecStarted",
            TaskEvent::Paused(_) => "containerd.events.TaskPaused",
            TaskEvent::Resumed(_) => "containerd.events.TaskResumed",
        }
    }

    /// The event in an `Any`, encoded by the generated code alone. (`util::convert_to_any`
    /// asks protobuf's reflection for the name, and its first use builds the descriptors of
    /// every message in the file: 350 KiB that each shim, so each pod, then held for good.)
    fn into_any(self) -> protobuf::Result<Any> {
        let type_url = self.type_name().to_string();
        let value = match self {
            TaskEvent::Create(e) => e.write_to_bytes(),
            TaskEvent::Start(e) => e.write_to_bytes(),
            TaskEvent::Exit(e) => e.write_to_bytes(),
            TaskEvent::Delete(e) => e.write_to_bytes(),
            TaskEvent::ExecAdded(e) => e.write_to_bytes(),
            TaskEvent::ExecStarted(e) => e.write_to_bytes(),
            TaskEvent::Paused(e) => e.write_to_bytes(),
            TaskEvent::Resumed(e) => e.write_to_bytes(),
        }?;
        Ok(Any {
            type_url,
            value,
            ..Default::default()
        })
    }
}

/// Where the Task service raises events. `send` never waits: the order of calls is the order
/// containerd sees.
pub trait EventSink: Send + Sync + 'static {
    fn send(&self, event: TaskEvent);
}

/// How long the forwarder keeps trying to deliver one event to an unreachable containerd.
const DELIVERY_ATTEMPTS: u32 = 30;
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("connecting to containerd's events at {address}: {reason}")]
pub struct EventsError {
    pub address: String,
    pub reason: String,
}

/// The real sink: a channel to one task that forwards each event to containerd's events
/// service, in order, each one delivered (or given up on) before the next.
pub struct ForwardedEvents {
    sender: mpsc::UnboundedSender<TaskEvent>,
    /// Events raised and not yet delivered or given up on.
    pending: watch::Sender<usize>,
}

impl ForwardedEvents {
    /// Connects to containerd's ttrpc address and starts the forwarding task for events of
    /// containerd namespace `namespace`.
    pub async fn connect(address: &str, namespace: String) -> Result<Self, EventsError> {
        let client = connect_events(address).await?;
        let (sender, mut receiver) = mpsc::unbounded_channel::<TaskEvent>();
        let (pending, _) = watch::channel(0usize);
        let pending_tx = pending.clone();
        let address = address.to_string();
        tokio::spawn(async move {
            let mut client = client;
            while let Some(event) = receiver.recv().await {
                deliver(&mut client, &address, &namespace, event).await;
                pending_tx.send_modify(|n| *n = n.saturating_sub(1));
            }
        });
        Ok(ForwardedEvents { sender, pending })
    }

    /// Resolves once every event raised so far has been delivered (or given up on).
    pub async fn flushed(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

async fn connect_events(address: &str) -> Result<EventsClient, EventsError> {
    let target = if address.contains("://") {
        address.to_string()
    } else {
        format!("unix://{address}")
    };
    Client::connect(&target)
        .await
        .map(EventsClient::new)
        .map_err(|e| EventsError {
            address: address.to_string(),
            reason: e.to_string(),
        })
}

async fn deliver(client: &mut EventsClient, address: &str, namespace: &str, event: TaskEvent) {
    let topic = event.topic();
    let envelope = match envelope(namespace, event) {
        Ok(envelope) => envelope,
        Err(err) => return tracing::warn!(%err, topic, "encoding a task event failed"),
    };
    let mut request = ForwardRequest::new();
    request.envelope = Some(envelope).into();
    let mut retry = FIRST_RETRY;
    for attempt in 1..=DELIVERY_ATTEMPTS {
        match client.forward(Context::default(), &request).await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(%err, topic, attempt, "delivering a task event failed");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
                if let Ok(reconnected) = connect_events(address).await {
                    *client = reconnected;
                }
            }
        }
    }
    tracing::error!(
        topic,
        "a task event could not be delivered to containerd; it is dropped"
    );
}

/// Why an event could not be put into containerd's envelope.
#[derive(Debug, thiserror::Error)]
enum EnvelopeError {
    #[error("stamping the event: {0}")]
    Timestamp(containerd_shim::Error),
    #[error("encoding the event: {0}")]
    Encode(protobuf::Error),
}

fn envelope(namespace: &str, event: TaskEvent) -> Result<Envelope, EnvelopeError> {
    let mut envelope = Envelope::new();
    envelope.topic = event.topic().to_string();
    envelope.namespace = namespace.to_string();
    envelope.timestamp = Some(util::timestamp().map_err(EnvelopeError::Timestamp)?).into();
    envelope.event = Some(event.into_any().map_err(EnvelopeError::Encode)?).into();
    Ok(envelope)
}

impl EventSink for ForwardedEvents {
    fn send(&self, event: TaskEvent) {
        self.pending.send_modify(|n| *n += 1);
        if self.sender.send(event).is_err() {
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
            tracing::warn!("the event forwarder is gone; an event was dropped");
        }
    }
}

/// A sink that keeps every event, for tests.
#[derive(Default)]
pub struct RecordedEvents(std::sync::Mutex<Vec<TaskEvent>>);

impl RecordedEvents {
    pub fn taken(&self) -> Vec<TaskEvent> {
        self.0
            .lock()
            .map(|mut events| std::mem::take(&mut *events))
            .unwrap_or_default()
    }

    /// `(topic, container id, exec id or "")` of every event so far.
    pub fn summary(&self) -> Vec<(&'static str, String, String)> {
        self.0
            .lock()
            .map(|events| events.iter().map(summarize).collect())
            .unwrap_or_default()
    }
}

fn summarize(event: &TaskEvent) -> (&'static str, String, String) {
    let topic = event.topic();
    match event {
        TaskEvent::Create(e) => (topic, e.container_id.clone(), String::new()),
        TaskEvent::Start(e) => (topic, e.container_id.clone(), String::new()),
        TaskEvent::Exit(e) => {
            let exec = if e.id == e.container_id {
                String::new()
            } else {
                e.id.clone()
            };
            (topic, e.container_id.clone(), exec)
        }
        TaskEvent::Delete(e) => (topic, e.container_id.clone(), String::new()),
        TaskEvent::ExecAdded(e) => (topic, e.container_id.clone(), e.exec_id.clone()),
        TaskEvent::ExecStarted(e) => (topic, e.container_id.clone(), e.exec_id.clone()),
        TaskEvent::Paused(e) => (topic, e.container_id.clone(), String::new()),
        TaskEvent::Resumed(e) => (topic, e.container_id.clone(), String::new()),
    }
}

impl EventSink for RecordedEvents {
    fn send(&self, event: TaskEvent) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::MessageFull;

    fn every_kind() -> Vec<TaskEvent> {
        let mut exit = TaskExit::new();
        exit.container_id = "c1".into();
        exit.id = "e1".into();
        exit.exit_status = 3;
        vec![
            TaskEvent::Create(TaskCreate {
                container_id: "c1".into(),
                bundle: "/run/b".into(),
                pid: 42,
                ..Default::default()
            }),
            TaskEvent::Start(TaskStart::new()),
            TaskEvent::Exit(exit),
            TaskEvent::Delete(TaskDelete::new()),
            TaskEvent::ExecAdded(TaskExecAdded::new()),
            TaskEvent::ExecStarted(TaskExecStarted::new()),
            TaskEvent::Paused(TaskPaused::new()),
            TaskEvent::Resumed(TaskResumed::new()),
        ]
    }

    /// What containerd-shim's `convert_to_any` (reflection) makes of the same event.
    fn by_reflection(event: TaskEvent) -> Any {
        let message: Box<dyn protobuf::MessageDyn> = match event {
            TaskEvent::Create(e) => Box::new(e),
            TaskEvent::Start(e) => Box::new(e),
            TaskEvent::Exit(e) => Box::new(e),
            TaskEvent::Delete(e) => Box::new(e),
            TaskEvent::ExecAdded(e) => Box::new(e),
            TaskEvent::ExecStarted(e) => Box::new(e),
            TaskEvent::Paused(e) => Box::new(e),
            TaskEvent::Resumed(e) => Box::new(e),
        };
        util::convert_to_any(message).expect("encodes")
    }

    #[test]
    fn events_encode_as_containerd_shim_encodes_them() {
        for event in every_kind() {
            let expected = by_reflection(event.clone());
            let any = event.into_any().expect("encodes");
            assert_eq!(any.type_url, expected.type_url);
            assert_eq!(any.value, expected.value, "{}", any.type_url);
        }
        assert_eq!(
            TaskEvent::Create(TaskCreate::new()).type_name(),
            TaskCreate::descriptor().full_name()
        );
    }

    /// Counts the whole process's heap: it needs a process of its own, as nextest (the
    /// project's runner, `hack/test.sh`) gives every test.
    #[test]
    #[cfg(target_env = "gnu")]
    fn encoding_events_leaves_nothing_on_the_heap() {
        let in_use = || {
            // SAFETY: mallinfo2 only reads malloc's counters.
            unsafe { libc::mallinfo2() }.uordblks
        };
        let before = in_use();
        for event in every_kind() {
            let envelope = envelope("k8s.io", event).expect("envelope");
            assert!(
                envelope
                    .event
                    .type_url
                    .starts_with("containerd.events.Task")
            );
        }
        let kept = in_use().saturating_sub(before);
        assert!(
            kept < 32 << 10,
            "encoding events kept {kept} bytes (protobuf's reflection keeps ~350 KiB)"
        );
    }
}
