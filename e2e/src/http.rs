//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, enough to speak the OCI
//! distribution API of a loopback registry and to load a pod's server (no TLS, no redirects;
//! [`request`] uses one connection per request, [`KeepAlive`] one for many).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("HTTP {method} {url}: {source}")]
    Io {
        method: String,
        url: String,
        source: std::io::Error,
    },
    #[error("HTTP {method} {url}: malformed answer: {what}")]
    Malformed {
        method: String,
        url: String,
        what: String,
    },
    #[error("only http://HOST:PORT/PATH URLs are supported, not {0}")]
    Url(String),
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `http://host:port/path?query` into `(host:port, /path?query)`.
pub fn split_url(url: &str) -> Result<(&str, &str), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Url(url.into()))?;
    match rest.find('/') {
        Some(i) => Ok((&rest[..i], &rest[i..])),
        None => Ok((rest, "/")),
    }
}

/// Sends one request and reads the whole answer.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let (host, path) = split_url(url)?;
    let io = |source| HttpError::Io {
        method: method.into(),
        url: url.into(),
        source,
    };
    let mut stream = TcpStream::connect(host).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body).map_err(io)?;
    stream.flush().map_err(io)?;

    let mut reader = BufReader::new(stream);
    read_response(&mut reader, method, url)
}

/// Reads one answer from `reader` (to a request `method` of `url`, named in errors).
fn read_response(
    reader: &mut BufReader<TcpStream>,
    method: &str,
    url: &str,
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        method: method.into(),
        url: url.into(),
        source,
    };
    let malformed = |what: &str| HttpError::Malformed {
        method: method.into(),
        url: url.into(),
        what: what.into(),
    };
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).map_err(io)? == 0 {
        return Err(malformed("the connection closed before an answer"));
    }
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| malformed(&format!("status line {status_line:?}")))?;
    let mut response_headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| malformed(&format!("header {line:?}")))?;
        response_headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers: response_headers,
        body: Vec::new(),
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(response);
    }
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).map_err(io)?;
            let size_hex = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| malformed(&format!("chunk size {size_line:?}")))?;
            if size == 0 {
                let mut crlf = String::new();
                reader.read_line(&mut crlf).map_err(io)?;
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).map_err(io)?;
            response.body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            reader.read_line(&mut crlf).map_err(io)?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| malformed(&format!("content-length {length:?}")))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(io)?;
        response.body = body;
    } else {
        reader.read_to_end(&mut response.body).map_err(io)?;
    }
    Ok(response)
}

/// One keep-alive HTTP/1.1 connection, for many requests in a row.
pub struct KeepAlive {
    host: String,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn connect(host: &str) -> Result<Self, HttpError> {
        let stream = TcpStream::connect(host).map_err(|source| HttpError::Io {
            method: "CONNECT".into(),
            url: host.into(),
            source,
        })?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = stream.set_nodelay(true);
        Ok(KeepAlive {
            host: host.to_string(),
            reader: BufReader::new(stream),
        })
    }

    /// `GET path` on this connection.
    pub fn get(&mut self, path: &str) -> Result<Response, HttpError> {
        let url = format!("http://{}{path}", self.host);
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        let stream = self.reader.get_mut();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|source| HttpError::Io {
                method: "GET".into(),
                url: url.clone(),
                source,
            })?;
        read_response(&mut self.reader, "GET", &url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:5000/v2/a/b?x=1").expect("valid"),
            ("127.0.0.1:5000", "/v2/a/b?x=1")
        );
        assert_eq!(split_url("http://h:1").expect("valid"), ("h:1", "/"));
        assert!(matches!(split_url("https://h/x"), Err(HttpError::Url(_))));
    }
}
