//! The accept loop against a process out of file descriptors: a flood of
//! connections (from another process) takes every descriptor this one
//! has, accept fails with EMFILE, and once the flood is gone the same
//! listener serves a real client again. Its own test binary: it lowers
//! the whole process's descriptor limit.

use ember_nbd::{Device, Exports};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Zeros;

impl Device for Zeros {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read(&self, buf: &mut [u8], _: u64) -> io::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _: &[u8], _: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

struct One;

impl Exports for One {
    fn open(&self, name: &str) -> Option<Arc<dyn Device>> {
        (name == "zeros").then(|| Arc::new(Zeros) as Arc<dyn Device>)
    }
}

/// OPT_GO for `zeros`, then one READ; whether the server answered.
fn served(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 18];
    if s.read_exact(&mut greeting).is_err() {
        return false;
    }
    let name = b"zeros";
    let mut msg = 3u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    msg.extend_from_slice(&7u32.to_be_bytes());
    msg.extend_from_slice(&(4 + name.len() as u32 + 2).to_be_bytes());
    msg.extend_from_slice(&(name.len() as u32).to_be_bytes());
    msg.extend_from_slice(name);
    msg.extend_from_slice(&0u16.to_be_bytes());
    if s.write_all(&msg).is_err() {
        return false;
    }
    loop {
        let mut h = [0u8; 20];
        if s.read_exact(&mut h).is_err() {
            return false;
        }
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let mut body = vec![0u8; u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize];
        if s.read_exact(&mut body).is_err() {
            return false;
        }
        match kind {
            1 => break,
            3 => continue,
            _ => return false,
        }
    }
    let mut req = 0x2560_9513u32.to_be_bytes().to_vec();
    req.extend_from_slice(&[0, 0, 0, 0]);
    req.extend_from_slice(&9u64.to_be_bytes());
    req.extend_from_slice(&0u64.to_be_bytes());
    req.extend_from_slice(&4096u32.to_be_bytes());
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut reply = vec![0u8; 16 + 4096];
    s.read_exact(&mut reply).is_ok() && reply[4..8] == [0, 0, 0, 0]
}

#[test]
fn the_accept_loop_survives_running_out_of_descriptors() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 (the flooding process) is not installed");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // Caps far above what the process can hold: descriptors run out first.
    let limits = ember_nbd::Limits {
        max_connections: 100_000,
        max_negotiating: 100_000,
        negotiation_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    rt.spawn(ember_nbd::serve(listener, Arc::new(One), limits));
    assert!(served(port), "not serving before the flood");
    // SAFETY: setrlimit with a valid rlimit; this binary runs one test.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: 64,
            rlim_max: 4096,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    // Another process opens 150 connections and holds them for 3 s.
    let mut flood = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import resource, socket, time\n\
                 resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))\n\
                 s = []\n\
                 for _ in range(150):\n\
                 \u{20}   try: s.append(socket.create_connection(('127.0.0.1', {port}), timeout=0.5))\n\
                 \u{20}   except OSError: pass\n\
                 print(len(s), flush=True)\n\
                 time.sleep(3)\n"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut opened = String::new();
    flood
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut opened)
        .unwrap();
    flood.wait().unwrap();

    assert!(
        opened.trim().parse::<usize>().unwrap_or(0) > 64,
        "the flood opened only {opened} connections"
    );
    // The flood is gone: the same listener serves again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !served(port) {
        assert!(
            Instant::now() < deadline,
            "the NBD listener did not survive running out of descriptors"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(rt);
}
