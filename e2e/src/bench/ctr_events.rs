//! containerd's event stream as `ctr events` prints it, with the publisher's timestamps: the
//! shims stamp `/tasks/create`, `/tasks/start` and `/tasks/exit` when they publish them, which
//! is how the start bench splits a task's life into phases without a gRPC client of its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::BenchError;
use crate::Containerd;

/// One line of `ctr events`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    pub at: SystemTime,
    pub namespace: String,
    pub topic: String,
    pub container_id: String,
}

/// Parses `2026-11-22 04:30:00.123456789 +0000 UTC default /tasks/create {"container_id":..}`.
pub fn parse_event_line(line: &str) -> Option<TaskEvent> {
    let mut fields = line.splitn(7, ' ');
    let date = fields.next()?;
    let time = fields.next()?;
    let offset = fields.next()?;
    let _zone = fields.next()?;
    let namespace = fields.next()?;
    let topic = fields.next()?;
    let body: serde_json::Value = serde_json::from_str(fields.next()?).ok()?;
    let container_id = body.get("container_id")?.as_str()?.to_owned();
    Some(TaskEvent {
        at: parse_go_time(date, time, offset)?,
        namespace: namespace.to_owned(),
        topic: topic.to_owned(),
        container_id,
    })
}

/// Go's `time.Time.String()` pieces: `2006-01-02`, `15:04:05.999999999`, `-0700`.
fn parse_go_time(date: &str, time: &str, offset: &str) -> Option<SystemTime> {
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (c.next()??, c.next()??, c.next()??);
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    if offset.len() != 5 {
        return None;
    }
    let sign = match &offset[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let off_h: i64 = offset[1..3].parse().ok()?;
    let off_m: i64 = offset[3..5].parse().ok()?;
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - sign * (off_h * 3600 + off_m * 60);
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A running `ctr events`, read on a thread.
pub struct EventStream {
    child: Child,
    events: Receiver<TaskEvent>,
    seen: Vec<TaskEvent>,
}

impl EventStream {
    pub fn start(containerd: &Containerd) -> Result<EventStream, BenchError> {
        let binary = containerd.version().bin_dir().join("ctr");
        let mut child = Command::new(&binary)
            .arg("--address")
            .arg(containerd.socket())
            .arg("events")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: format!("{} events", binary.display()),
                source,
            })?;
        let (tx, events) = channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(event) = parse_event_line(&line)
                        && tx.send(event).is_err()
                    {
                        break;
                    }
                }
            });
        }
        // `ctr events` subscribes asynchronously; give it a moment before anything happens.
        std::thread::sleep(Duration::from_millis(300));
        Ok(EventStream {
            child,
            events,
            seen: Vec::new(),
        })
    }

    /// Waits until `container_id` has published `topic`; returns the event's timestamp.
    pub fn wait_for(
        &mut self,
        container_id: &str,
        topic: &str,
        limit: Duration,
    ) -> Result<SystemTime, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.seen_at(container_id, topic) {
                return Ok(at);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Timeout {
                        what: format!("event {topic} of {container_id}"),
                        secs: limit.as_secs_f64(),
                    });
                }
            }
        }
    }

    /// An event already received, without waiting.
    pub fn seen_at(&mut self, container_id: &str, topic: &str) -> Option<SystemTime> {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
        self.seen
            .iter()
            .find(|e| e.container_id == container_id && e.topic == topic)
            .map(|e| e.at)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_parse_with_publisher_timestamps() {
        let line = r#"2026-11-22 04:30:01.5 +0000 UTC default /tasks/start {"container_id":"bench-spore-3","pid":4242}"#;
        let event = parse_event_line(line).expect("parses");
        assert_eq!(event.topic, "/tasks/start");
        assert_eq!(event.namespace, "default");
        assert_eq!(event.container_id, "bench-spore-3");
        let since = event.at.duration_since(UNIX_EPOCH).expect("after epoch");
        // 2026-11-22T04:30:01.5Z
        assert_eq!(since, Duration::new(1_795_321_801, 500_000_000));
        let shifted = parse_event_line(
            r#"2026-11-22 05:30:01.5 +0100 CET default /tasks/start {"container_id":"x"}"#,
        )
        .expect("parses");
        assert_eq!(shifted.at, event.at);
    }

    #[test]
    fn other_lines_are_skipped() {
        for line in [
            "",
            "2026-11-22 04:30:01 +0000 UTC default /snapshot/prepare {\"key\":\"k\"}",
            "2026-11-22 04:30:01.1234567891 +0000 UTC default /tasks/exit {\"container_id\":\"x\"}",
            "not a date at all /tasks/exit {\"container_id\":\"x\"}",
        ] {
            assert_eq!(parse_event_line(line), None, "{line}");
        }
    }
}
