//! Resolves each `NAME` argument as the guest's libc would (`NAME:80` through WASI's name
//! lookup) and prints `NAME -> ADDR[,ADDR...]` or `NAME -> error: ...`, one line each.
use std::net::ToSocketAddrs;

fn main() {
    for name in std::env::args().skip(1) {
        match (name.as_str(), 80).to_socket_addrs() {
            Ok(addrs) => {
                let mut ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                ips.sort();
                ips.dedup();
                println!("{name} -> {}", ips.join(","));
            }
            Err(err) => println!("{name} -> error: {err}"),
        }
    }
}
