//! The kubelet's CRI container log format, as containerd writes it:
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <text>` per line; `P` marks a partial line whose
//! text continues in the next record of the same stream, `F` a full (final) one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CriLogError {
    #[error("could not read the CRI log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line_number}: not a CRI log record ({what}): {line:?}")]
    Malformed {
        path: PathBuf,
        line_number: usize,
        what: &'static str,
        line: String,
    },
    #[error("{path}: no line containing {needle:?} within {secs:.1} s; the log so far:\n{log}")]
    Timeout {
        path: PathBuf,
        needle: String,
        secs: f64,
        log: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLogRecord {
    /// The RFC 3339 time as written (nanosecond precision).
    pub time: String,
    pub stream: LogStream,
    /// `P`: the text continues in the next record of the stream.
    pub partial: bool,
    pub text: String,
}

/// A whole line of output, partial records joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLogLine {
    /// The time of the line's last record.
    pub time: String,
    pub stream: LogStream,
    pub text: String,
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(time: &str) -> bool {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &time[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if rest == "Z" {
        return true;
    }
    let z = rest.as_bytes();
    z.len() == 6
        && (z[0] == b'+' || z[0] == b'-')
        && z[1..3].iter().all(u8::is_ascii_digit)
        && z[3] == b':'
        && z[4..].iter().all(u8::is_ascii_digit)
}

/// Parses one record.
pub fn parse_record(line: &str) -> Result<CriLogRecord, &'static str> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next().ok_or("no time")?;
    if !is_rfc3339(time) {
        return Err("the time is not RFC 3339");
    }
    let stream = match parts.next() {
        Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        _ => return Err("the stream is neither stdout nor stderr"),
    };
    let tags = parts.next().ok_or("no tag")?;
    let partial = match tags.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return Err("the tag is neither P nor F"),
    };
    Ok(CriLogRecord {
        time: time.to_owned(),
        stream,
        partial,
        text: parts.next().unwrap_or_default().to_owned(),
    })
}

/// Parses CRI log text into records.
pub fn parse_records(path: &Path, text: &str) -> Result<Vec<CriLogRecord>, CriLogError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            parse_record(line).map_err(|what| CriLogError::Malformed {
                path: path.to_path_buf(),
                line_number: i + 1,
                what,
                line: line.to_owned(),
            })
        })
        .collect()
}

/// Joins partial records into lines, per stream.
pub fn join_records(records: &[CriLogRecord]) -> Vec<CriLogLine> {
    let mut lines = Vec::new();
    let mut pending_out = String::new();
    let mut pending_err = String::new();
    for record in records {
        let pending = match record.stream {
            LogStream::Stdout => &mut pending_out,
            LogStream::Stderr => &mut pending_err,
        };
        pending.push_str(&record.text);
        if !record.partial {
            lines.push(CriLogLine {
                time: record.time.clone(),
                stream: record.stream,
                text: std::mem::take(pending),
            });
        }
    }
    lines
}

/// Reads a CRI log file into whole lines. A missing file is an error: containerd creates the
/// file when the container is created.
pub fn read_cri_log(path: &Path) -> Result<Vec<CriLogLine>, CriLogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CriLogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(join_records(&parse_records(path, &text)?))
}

/// The text of the lines of one stream.
pub fn stream_text(lines: &[CriLogLine], stream: LogStream) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.clone())
        .collect()
}

/// Polls the log until a line contains `needle` and returns that line.
pub async fn wait_for_log_line(
    path: &Path,
    needle: &str,
    limit: Duration,
) -> Result<CriLogLine, CriLogError> {
    let start = Instant::now();
    loop {
        if let Ok(lines) = read_cri_log(path)
            && let Some(line) = lines.into_iter().find(|l| l.text.contains(needle))
        {
            return Ok(line);
        }
        if start.elapsed() >= limit {
            return Err(CriLogError::Timeout {
                path: path.to_path_buf(),
                needle: needle.to_owned(),
                secs: limit.as_secs_f64(),
                log: std::fs::read_to_string(path).unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_with_partials_joined_per_stream() {
        let text = "2026-11-22T04:05:06.123456789Z stdout P hel\n\
                    2026-11-22T04:05:06.200000000Z stderr F oops: a b\n\
                    2026-11-22T04:05:06.300000000+01:00 stdout F lo world\n\
                    2026-11-22T04:05:07Z stdout F \n";
        let lines = join_records(&parse_records(Path::new("x.log"), text).expect("valid"));
        assert_eq!(
            lines,
            [
                CriLogLine {
                    time: "2026-11-22T04:05:06.200000000Z".into(),
                    stream: LogStream::Stderr,
                    text: "oops: a b".into()
                },
                CriLogLine {
                    time: "2026-11-22T04:05:06.300000000+01:00".into(),
                    stream: LogStream::Stdout,
                    text: "hello world".into()
                },
                CriLogLine {
                    time: "2026-11-22T04:05:07Z".into(),
                    stream: LogStream::Stdout,
                    text: "".into()
                },
            ]
        );
        assert_eq!(stream_text(&lines, LogStream::Stdout), ["hello world", ""]);
    }

    #[test]
    fn malformed_records_are_named() {
        for (line, what) in [
            ("hello", "the time is not RFC 3339"),
            (
                "2026-11-22T04:05:06Z stdin F x",
                "the stream is neither stdout nor stderr",
            ),
            (
                "2026-11-22T04:05:06Z stdout X x",
                "the tag is neither P nor F",
            ),
            (
                "2026-11-22 04:05:06Z stdout F x",
                "the time is not RFC 3339",
            ),
            (
                "2026-11-22T04:05:06.Z stdout F x",
                "the time is not RFC 3339",
            ),
        ] {
            let err = parse_records(Path::new("c.log"), line).expect_err(line);
            assert!(
                matches!(&err, CriLogError::Malformed { what: w, line_number: 1, .. } if *w == what),
                "{line}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_log_is_an_error() {
        assert!(matches!(
            read_cri_log(Path::new("/nonexistent/0.log")),
            Err(CriLogError::Read { .. })
        ));
    }
}
