//! A tiny authoritative DNS server for tests, standing in for a cluster's DNS (CoreDNS): it
//! answers `A` queries for the names it is given over UDP, `NXDOMAIN` for any other name, and
//! records every name it was asked, so a test can see the search list and `ndots` at work.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

#[derive(Debug, thiserror::Error)]
#[error("starting the test DNS server on {addr}: {source}")]
pub struct DnsError {
    addr: SocketAddr,
    source: std::io::Error,
}

pub struct DnsServer {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `records` (fully qualified names, without the final dot) on `addr`.
    pub fn start(addr: SocketAddr, records: HashMap<String, Ipv4Addr>) -> Result<Self, DnsError> {
        let socket = UdpSocket::bind(addr).map_err(|source| DnsError { addr, source })?;
        let addr = socket
            .local_addr()
            .map_err(|source| DnsError { addr, source })?;
        let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (asked_by, stopped) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                if let Some((name, answer)) = answer(&buffer[..n], &records) {
                    if let Ok(mut asked) = asked_by.lock() {
                        asked.push(name);
                    }
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Ok(DnsServer {
            addr,
            asked,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every name asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The question's name and the answer to a query; `None` for what is not a query.
fn answer(query: &[u8], records: &HashMap<String, Ipv4Addr>) -> Option<(String, Vec<u8>)> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let name = labels.join(".");
    let found = records.get(&name);
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[0..2]);
    // A response, recursion desired and available; NXDOMAIN when the name is unknown.
    let rcode = if found.is_some() { 0 } else { 3 };
    out.extend_from_slice(&[0x81, 0x80 | rcode]);
    let answers: u16 = u16::from(found.is_some() && qtype == TYPE_A);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if let (Some(ip), 1) = (found, answers) {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&30u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    Some((name, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn known_names_get_their_address_and_others_nxdomain() {
        let records = HashMap::from([("web.svc.local".to_string(), Ipv4Addr::new(10, 0, 0, 9))]);
        let (name, reply) = answer(&query("Web.svc.local", TYPE_A), &records).expect("answered");
        assert_eq!(name, "web.svc.local");
        assert_eq!(&reply[0..2], &[0x12, 0x34]);
        assert_eq!(reply[3] & 0x0f, 0);
        assert_eq!(&reply[reply.len() - 4..], &[10, 0, 0, 9]);
        let (_, reply) = answer(&query("nope.local", TYPE_A), &records).expect("answered");
        assert_eq!(reply[3] & 0x0f, 3);
    }

    #[test]
    fn a_server_answers_over_udp() {
        let records = HashMap::from([("a.test".to_string(), Ipv4Addr::new(192, 0, 2, 1))]);
        let server =
            DnsServer::start("127.0.0.1:0".parse().expect("addr"), records).expect("start");
        let client = UdpSocket::bind("127.0.0.1:0").expect("client");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        client
            .send_to(&query("a.test", TYPE_A), server.addr())
            .expect("send");
        let mut reply = [0u8; 512];
        let n = client.recv(&mut reply).expect("an answer");
        assert_eq!(&reply[n - 4..n], &[192, 0, 2, 1]);
        assert_eq!(server.asked(), ["a.test"]);
    }
}
