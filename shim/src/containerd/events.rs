//! Task events for containerd. Every event the shim raises goes through one [`EventSink`]; the
//! real one, [`ForwardedEvents`], puts them on one channel that one task forwards to containerd's
//! event service, so they reach containerd in the order they were raised (TaskCreate, TaskStart,
//! TaskExit, TaskDelete of a container never overtake each other). Tests hold a recording sink.

use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use tokio::sync::mpsc;

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

    fn into_message(self) -> Box<dyn MessageDyn> {
        match self {
            TaskEvent::Create(e) => Box::new(e),
            TaskEvent::Start(e) => Box::new(e),
            TaskEvent::Exit(e) => Box::new(e),
            TaskEvent::Delete(e) => Box::new(e),
            TaskEvent::ExecAdded(e) => Box::new(e),
            TaskEvent::ExecStarted(e) => Box::new(e),
            TaskEvent::Paused(e) => Box::new(e),
            TaskEvent::Resumed(e) => Box::new(e),
        }
    }
}

/// Where the Task service raises events. `send` never waits: the order of calls is the order
/// containerd sees.
pub trait EventSink: Send + Sync + 'static {
    fn send(&self, event: TaskEvent);
}

/// The real sink: a channel to one forwarding task.
pub struct ForwardedEvents {
    sender: mpsc::UnboundedSender<TaskEvent>,
}

impl ForwardedEvents {
    /// Starts the forwarding task for events of containerd namespace `namespace`.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<TaskEvent>();
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                let topic = event.topic();
                if let Err(err) = publisher
                    .publish(Context::default(), topic, &namespace, event.into_message())
                    .await
                {
                    tracing::warn!(%err, topic, "publishing a task event failed");
                }
            }
        });
        ForwardedEvents { sender }
    }
}

impl EventSink for ForwardedEvents {
    fn send(&self, event: TaskEvent) {
        if self.sender.send(event).is_err() {
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
