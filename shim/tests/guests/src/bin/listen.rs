//! Listens on TCP 127.0.0.1:PORT (the `PORT` env, default 8080), prints "listening", and answers
//! every connection with a minimal HTTP/1.0 response whose body is the line "hello from wasm",
//! so both `nc` and `wget` in a sidecar of the same pod can reach it over localhost.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

const BODY: &str = "hello from wasm\n";

fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => match text.parse() {
            Ok(port) => port,
            Err(e) => {
                eprintln!("PORT={text:?} is not a port number: {e}");
                std::process::exit(2);
            }
        },
        Err(_) => 8080,
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on 127.0.0.1:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream) {
                    eprintln!("connection failed: {e}");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

/// Reads the request head (up to a blank line, EOF or 8 KiB), then writes the response.
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    println!("answered a connection");
    Ok(())
}
