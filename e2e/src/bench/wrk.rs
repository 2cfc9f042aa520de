//! Load from `wrk` (Debian's package): one run at a connection count, its output parsed into
//! requests per second and latency percentiles.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::BenchError;

/// What one request of a load run is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Load {
    Get {
        path: String,
    },
    /// A POST of `body` (sent with `content-type: application/json`).
    PostJson {
        path: String,
        body: PathBuf,
    },
}

/// One `wrk` run's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkRun {
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Answers other than 2xx/3xx plus socket errors: any is a failed run.
    pub errors: u64,
}

/// Runs `wrk` against `http://{host}` for `duration` over `connections` keep-alive connections
/// (one wrk thread per connection, at most two: this is a 2-core machine).
pub fn run(
    host: &str,
    load: &Load,
    connections: usize,
    duration: Duration,
    scratch: &Path,
) -> Result<WrkRun, BenchError> {
    let (path, script) = match load {
        Load::Get { path } => (path.as_str(), None),
        Load::PostJson { path, body } => {
            let script = scratch.join("post.lua");
            let body_text = std::fs::read_to_string(body).map_err(|source| BenchError::Io {
                path: body.clone(),
                source,
            })?;
            std::fs::write(&script, post_script(&body_text)).map_err(|source| BenchError::Io {
                path: script.clone(),
                source,
            })?;
            (path.as_str(), Some(script))
        }
    };
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", connections.clamp(1, 2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    if let Some(script) = &script {
        command.arg("-s").arg(script);
    }
    command.arg(format!("http://{host}{path}"));
    let output = command.output().map_err(|source| BenchError::Spawn {
        what: "wrk (apt-get install wrk)".into(),
        source,
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Load(format!(
            "wrk exited with {}: {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    parse(&text).ok_or_else(|| BenchError::Load(format!("cannot read wrk's output:\n{text}")))
}

/// A wrk Lua script that POSTs `body` as JSON.
fn post_script(body: &str) -> String {
    let mut quoted = String::with_capacity(body.len() + 2);
    for c in body.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            c => quoted.push(c),
        }
    }
    format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = \"{quoted}\"\n"
    )
}

/// Reads `Requests/sec`, the 50 % and 99 % latencies of `--latency` and the error lines.
pub fn parse(text: &str) -> Option<WrkRun> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => rps = value.parse::<f64>().ok(),
            ["50%", value] => p50 = latency_us(value),
            ["99%", value] => p99 = latency_us(value),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Some(WrkRun {
        requests_per_second: rps?,
        p50_us: p50?,
        p99_us: p99?,
        errors,
    })
}

/// wrk's latency (`512.00us`, `1.52ms`, `2.01s`) in microseconds.
fn latency_us(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://127.0.0.1:18080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.02ms    1.59ms  28.63ms   83.49%
    Req/Sec     5.43k     1.09k    7.58k    64.00%
  Latency Distribution
     50%  286.00us
     75%    3.58ms
     90%    4.53ms
     99%    1.46s
  27040 requests in 5.01s, 3.76MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   5398.64
Transfer/sec:    769.73KB
";

    #[test]
    fn wrk_output_parses() {
        let run = parse(OUTPUT).expect("parses");
        assert_eq!(run.requests_per_second, 5398.64);
        assert_eq!(run.p50_us, 286.0);
        assert_eq!(run.p99_us, 1_460_000.0);
        assert_eq!(run.errors, 7);
    }

    #[test]
    fn output_without_figures_is_none() {
        assert_eq!(
            parse("unable to connect to 127.0.0.1:1 Connection refused"),
            None
        );
        assert_eq!(latency_us("3.58ms"), Some(3580.0));
        assert_eq!(latency_us("3.58"), None);
    }

    #[test]
    fn the_post_script_quotes_the_body() {
        let script = post_script("{\"a\": \"b\\\\c\"}\n");
        assert!(script.contains("wrk.method = \"POST\""));
        assert!(
            script.contains(r#"wrk.body = "{\"a\": \"b\\\\c\"}\n""#),
            "{script}"
        );
    }
}
