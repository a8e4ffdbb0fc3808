//! The listeners at the edges of what clients can cost: idle, half-sent,
//! excess and never-reading connections on the HTTP and NBD ports, bodies
//! too large or malformed, and shutdown whatever clients do. The class of
//! defect: a resource (descriptors, memory, the process's exit) that an
//! unauthenticated or misbehaving client can hold without bound. Every
//! test asserts what a client sees (answers, closed sockets, the server
//! still serving) and what the process holds (descriptors, memory).

mod common;

use common::nbd_client::NbdClient;
use common::{PROJECT, Server};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Whether the server has closed `s` (EOF, or a reset), reading and
/// discarding whatever it sent first.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

fn get_ok(s: &Server) -> bool {
    let (code, _) = s.call(
        "GET",
        &s.v3("/volumes"),
        &format!("admin:{PROJECT}"),
        None,
        None,
    );
    code == 200
}

/// Idle, half-sent (slowloris) and keep-alive connections are closed after
/// the header timeout; past the cap a connection gets a JSON 503 at once;
/// the API answers throughout (below the cap) and after; the process never
/// holds more descriptors than the cap allows.
#[test]
fn http_connections_are_capped_and_idle_ones_closed() {
    let s = Server::start_with(&[
        "--auth",
        "noauth",
        "--max-connections",
        "60",
        "--header-timeout-secs",
        "2",
    ]);
    let baseline_fds = s.open_fds();
    let mut idle: Vec<TcpStream> = (0..30).map(|_| connect(s.port)).collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = connect(s.port);
            c.write_all(b"GET /v3/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            c
        })
        .collect();
    // A keep-alive connection after one full request.
    let mut kept = connect(s.port);
    kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 300");
    // Below the cap, real clients are served while all those wait.
    assert!(
        get_ok(&s),
        "the API stopped answering under 51 idle connections"
    );
    // Past the cap: a clear refusal, not a hang.
    let mut excess: Vec<TcpStream> = (0..20).map(|_| connect(s.port)).collect();
    let mut refused = 0;
    for c in excess.iter_mut() {
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("application/json"), "{text}");
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], 503);
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "only {refused} of 20 connections past the cap were refused"
    );
    assert!(
        s.open_fds() <= baseline_fds + 60 + 8,
        "{} descriptors open for a cap of 60",
        s.open_fds()
    );
    // Within the header timeout (and slack), the server closes them all.
    std::thread::sleep(Duration::from_secs(3));
    for (what, conns) in [("idle", &mut idle), ("half-sent", &mut slow)] {
        for c in conns.iter_mut() {
            assert!(closed_by_server(c), "a {what} connection is still open");
        }
    }
    assert!(
        closed_by_server(&mut kept),
        "an idle keep-alive connection is still open"
    );
    assert!(get_ok(&s));
}

/// SIGTERM ends the process in bounded time even with a client that sent
/// half a request header and one that never reads its response.
#[test]
fn sigterm_ends_the_process_whatever_clients_do() {
    let mut s = Server::start();
    let volume = s.create_volume(1);
    let mut half = connect(s.port);
    half.write_all(b"POST /v3/x/volumes HTTP/1.1\r\nHost: x\r\nContent-Le")
        .unwrap();
    let mut unread = connect(s.port);
    let request = format!(
        "GET /v3/{PROJECT}/volumes/{volume}/data?offset=0&length={} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: admin:{PROJECT}\r\n\r\n",
        64 << 20
    );
    unread.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.stop_within(Duration::from_secs(30)),
        "ember did not exit within 30 s of SIGTERM"
    );
    drop((half, unread));
}

fn raw_request(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut c = connect(port);
    // The server may answer (and stop reading) before all of it is sent.
    let _ = c.write_all(request);
    let mut text = Vec::new();
    let _ = c.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_lowercase(), body.to_string())
}

/// Too-large and malformed bodies get each dialect's own JSON error, never
/// a plain-text one.
#[test]
fn oversized_and_malformed_bodies_get_the_dialects_json_errors() {
    let evs_port = common::free_port();
    // Embedded identity, so its router answers /identity; the body is
    // read (and refused) before any token is looked at.
    let s = Server::start_with(&[
        "--auth",
        "embedded",
        "--admin-password",
        "secret",
        "--evs-listen",
        &format!("127.0.0.1:{evs_port}"),
    ]);
    let big = vec![b' '; 3 << 20];
    let _ = &big;
    let token = format!("admin:{PROJECT}");
    // (port, path, error key and code for 413, for 400): Cinder's and
    // Nova's faults, Keystone's error, EVS's error codes.
    let cases: [(u16, String, &str, Value, &str, Value); 4] = [
        (
            s.port,
            format!("/v3/{PROJECT}/volumes"),
            "overLimit",
            json!(413),
            "badRequest",
            json!(400),
        ),
        (
            s.port,
            format!("/v2.1/{PROJECT}/os-snapshots"),
            "overLimit",
            json!(413),
            "badRequest",
            json!(400),
        ),
        (
            s.port,
            "/identity/v3/auth/tokens".into(),
            "error",
            json!(413),
            "error",
            json!(400),
        ),
        (
            evs_port,
            format!("/v2/{PROJECT}/cloudsnapshots"),
            "error",
            json!("EVS.5413"),
            "error",
            json!("EVS.5400"),
        ),
    ];
    for (port, path, key, code, bad_key, bad_code) in &cases {
        // Declared too large: refused before the body is sent.
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            big.len()
        );
        let (status, head, body) = raw_request(*port, request.as_bytes());
        assert_eq!(status, 413, "{path}: {head}\n{body}");
        assert!(head.contains("application/json"), "{path}: {head}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(&v[key]["code"], code, "{path}: {body}");
        // Too large as it arrives (chunked, no length).
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..3 {
            request.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
            request.extend_from_slice(&vec![b' '; 1 << 20]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let (status, _, body) = raw_request(*port, &request);
        assert_eq!(status, 413, "{path} (chunked): {body}");
        // Malformed chunked framing.
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n"
        );
        let (status, head, body) = raw_request(*port, request.as_bytes());
        assert_eq!(status, 400, "{path} (malformed): {head}\n{body}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(&v[bad_key]["code"], bad_code, "{path} (malformed): {body}");
    }
}

/// Floods of idle connections on the NBD port: past the cap they are
/// closed at once (descriptors stay bounded), the silent ones go after the
/// negotiation deadline, and real clients are served again.
#[test]
fn nbd_connections_are_capped_and_silent_ones_dropped() {
    let s = Server::start_with(&["--auth", "noauth", "--nbd-max-connections", "64"]);
    let volume = s.create_volume(1);
    let uri = common::attach(&s, &volume, "rw").1;
    let baseline_fds = s.open_fds();
    let mut flood: Vec<TcpStream> = (0..300).map(|_| connect(s.nbd_port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        s.open_fds() <= baseline_fds + 64 + 8,
        "{} descriptors open for a cap of 64",
        s.open_fds()
    );
    let closed_now = flood
        .iter_mut()
        .map(|c| {
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            // The greeting, if any, then EOF for the refused ones.
            let mut buf = [0u8; 64];
            matches!(c.read(&mut buf), Ok(0) | Err(_)) || closed_by_server(c)
        })
        .filter(|closed| *closed)
        .count();
    assert!(
        closed_now >= 200,
        "only {closed_now} of 300 connections past the cap were closed"
    );
    // The silent ones are dropped after the negotiation deadline (10 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut nbd) = NbdClient::connect(&uri) {
            nbd.write(0, &[7u8; 4096], true)
                .expect("write after the flood");
            assert_eq!(nbd.read(0, 4096).unwrap(), vec![7u8; 4096]);
            nbd.disconnect();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the NBD server never served again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(flood);
}

/// A client that pipelines large reads and never reads the replies holds
/// at most its connection's budget: the server stops reading its requests
/// (back-pressure) instead of buffering them; many such clients together
/// stay within the server's budget.
#[test]
fn nbd_clients_that_never_read_cannot_grow_memory() {
    let s = Server::start_with(&["--auth", "noauth", "--nbd-reply-timeout-secs", "3"]);
    let volume = s.create_volume(1);
    let uri = common::attach(&s, &volume, "rw").1;
    let before = s.rss();
    let (addr, name) = common::nbd_client::parse_uri(&uri);
    let mut hogs = vec![];
    for _ in 0..8 {
        let nbd = NbdClient::connect(&uri).expect("connect");
        drop(nbd);
        // A raw session: negotiate, then 40 pipelined 32 MiB reads.
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        negotiate(&mut c, &name);
        for cookie in 0..40u64 {
            let mut req = 0x2560_9513u32.to_be_bytes().to_vec();
            req.extend_from_slice(&0u16.to_be_bytes());
            req.extend_from_slice(&0u16.to_be_bytes()); // READ
            req.extend_from_slice(&cookie.to_be_bytes());
            req.extend_from_slice(&0u64.to_be_bytes());
            req.extend_from_slice(&(32u32 << 20).to_be_bytes());
            if c.write_all(&req).is_err() {
                break;
            }
        }
        hogs.push(c);
    }
    std::thread::sleep(Duration::from_secs(3));
    let grown = s.rss().saturating_sub(before);
    eprintln!(
        "never-reading NBD clients grew the server by {} MiB",
        grown >> 20
    );
    // 8 × 40 × 32 MiB were asked for (10 GiB); the server's budget is
    // 512 MiB, each connection's 64 MiB.
    assert!(
        grown < 700 << 20,
        "the server grew by {} MiB for clients that never read",
        grown >> 20
    );
    // Others are still served (at the latest once the hogs, which never
    // read, are cut off after the reply timeout).
    let mut nbd = NbdClient::connect(&uri).expect("connect while hogs wait");
    nbd.write(4096, &[3u8; 4096], true).unwrap();
    nbd.disconnect();
    drop(hogs);
}

fn negotiate(c: &mut TcpStream, name: &str) {
    let mut greeting = [0u8; 18];
    c.read_exact(&mut greeting).unwrap();
    c.write_all(&3u32.to_be_bytes()).unwrap();
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&0u16.to_be_bytes());
    let mut opt = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    opt.extend_from_slice(&7u32.to_be_bytes());
    opt.extend_from_slice(&(data.len() as u32).to_be_bytes());
    opt.extend_from_slice(&data);
    c.write_all(&opt).unwrap();
    loop {
        let mut h = [0u8; 20];
        c.read_exact(&mut h).unwrap();
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).unwrap();
        if kind == 1 {
            return;
        }
    }
}

/// Data API reads that are never taken hold at most the service's data
/// budget; past it, reads wait and then answer 503, and the server's
/// memory stays bounded.
#[test]
fn data_api_reads_never_taken_stay_within_the_budget() {
    let s = Server::start();
    let volume = s.create_volume(1);
    let before = s.rss();
    let mut slow = vec![];
    for _ in 0..16 {
        let mut c = connect(s.port);
        c.write_all(
            format!(
                "GET /v3/{PROJECT}/volumes/{volume}/data?offset=0&length={} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: admin:{PROJECT}\r\n\r\n",
                64 << 20
            )
            .as_bytes(),
        )
        .unwrap();
        slow.push(c);
    }
    std::thread::sleep(Duration::from_secs(3));
    let grown = s.rss().saturating_sub(before);
    eprintln!(
        "unread data API reads grew the server by {} MiB",
        grown >> 20
    );
    assert!(
        grown < 400 << 20,
        "16 unread 64 MiB reads grew the server by {} MiB",
        grown >> 20
    );
    // Small requests are still answered.
    let (code, body) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(code, 200, "{body}");
    drop(slow);
    // Once those clients are gone, a read works again.
    let data = s.read("volumes", &volume, 0, 4096);
    assert_eq!(data.len(), 4096);
    let _ = json!({});
}

/// Uploads that never finish hold at most the server's body budget (each
/// body's first 112 KiB aside): past it, the server stops reading them
/// rather than buffering, and small JSON requests still get through.
#[test]
fn unfinished_uploads_stay_within_the_body_budget() {
    let s = Server::start();
    let volume = s.create_volume(1);
    let before = s.rss();
    let chunk = vec![0x61u8; 64 << 10];
    let mut uploads = vec![];
    for _ in 0..400 {
        let mut c = connect(s.port);
        c.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let head = format!(
            "PUT /v3/{PROJECT}/volumes/{volume}/data?offset=0 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: admin:{PROJECT}\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        );
        c.write_all(head.as_bytes()).unwrap();
        // 1.9 MiB of the promised 2 MiB, as far as the server takes it.
        for _ in 0..30 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
        uploads.push(c);
    }
    std::thread::sleep(Duration::from_secs(2));
    let grown = s.rss().saturating_sub(before);
    eprintln!(
        "400 unfinished uploads grew the server by {} MiB",
        grown >> 20
    );
    // 400 × 1.9 MiB were offered (760 MiB); the budget is 256 MiB beyond
    // the first 112 KiB of each (44 MiB), hyper keeps at most 128 KiB per
    // connection (50 MiB), and a connection's own state some more.
    assert!(grown < 500 << 20, "grew by {} MiB", grown >> 20);
    let (code, body) = s.admin("GET", &format!("/volumes/{volume}"), None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = s.admin(
        "POST",
        "/volumes",
        Some(json!({"volume": {"size": 1, "name": "still-served"}})),
    );
    assert_eq!(code, 202, "{body}");
    drop(uploads);
}
