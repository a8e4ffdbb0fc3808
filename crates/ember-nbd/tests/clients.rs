//! The NBD server against real clients (qemu-io, qemu-img, nbdinfo) and
//! against hand-written hostile byte streams, over an in-memory device.

use ember_nbd::proto;
use ember_nbd::{Device, Exports};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

struct Memory {
    bytes: Mutex<Vec<u8>>,
    read_only: bool,
}

impl Device for Memory {
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.bytes.lock().unwrap();
        buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut b = self.bytes.lock().unwrap();
        b[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        let mut b = self.bytes.lock().unwrap();
        b[offset as usize..(offset + length) as usize].fill(0);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

struct TwoExports {
    rw: Arc<Memory>,
    ro: Arc<Memory>,
}

impl Exports for TwoExports {
    fn open(&self, name: &str) -> Option<Arc<dyn Device>> {
        match name {
            "rw-3f9c2a" => Some(self.rw.clone()),
            "ro-77d1e0" => Some(self.ro.clone()),
            _ => None,
        }
    }
}

fn start() -> (SocketAddr, Arc<Memory>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rw = Arc::new(Memory {
        bytes: Mutex::new(vec![0; 16 << 20]),
        read_only: false,
    });
    let mut ro_bytes = vec![0u8; 1 << 20];
    ro_bytes[..4096].fill(0x5a);
    let ro = Arc::new(Memory {
        bytes: Mutex::new(ro_bytes),
        read_only: true,
    });
    let exports: Arc<dyn Exports> = Arc::new(TwoExports { rw: rw.clone(), ro });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(ember_nbd::serve(
        listener,
        exports,
        ember_nbd::Limits::default(),
    ));
    (addr, rw, rt)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tool_available(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

#[test]
fn qemu_io_writes_and_reads_back_through_the_export() {
    let (addr, rw, _rt) = start();
    let url = format!("nbd://{addr}/rw-3f9c2a");
    let (ok, out) = run(Command::new("qemu-io").args([
        "-f",
        "raw",
        &url,
        "-c",
        "write -P 0xab 0 1M",
        "-c",
        "write -P 0xcd 4096 4096",
        "-c",
        "write -z 8192 4096",
        "-c",
        "write -P 0xee -f 15M 1M",
        "-c",
        "flush",
        "-c",
        "discard 12M 64k",
        "-c",
        "aio_write -P 0x11 2M 64k",
        "-c",
        "aio_write -P 0x22 3M 64k",
        "-c",
        "aio_flush",
        "-c",
        "read -P 0xab 0 4096",
        "-c",
        "read -P 0xcd 4096 4096",
        "-c",
        "read -P 0 8192 4096",
        "-c",
        "read -P 0x11 2M 64k",
        "-c",
        "read -P 0x22 3M 64k",
        "-c",
        "read -P 0xee 15M 1M",
    ]));
    assert!(ok, "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
    let bytes = rw.bytes.lock().unwrap();
    assert_eq!(bytes[0], 0xab);
    assert_eq!(bytes[4096], 0xcd);
    assert_eq!(bytes[8192], 0);
    assert_eq!(bytes[(2 << 20) + 100], 0x11);
    assert_eq!(bytes[(15 << 20) + 100], 0xee);
}

#[test]
fn read_only_exports_refuse_writes() {
    let (addr, _rw, _rt) = start();
    let url = format!("nbd://{addr}/ro-77d1e0");
    let (ok, out) =
        run(Command::new("qemu-io").args(["-r", "-f", "raw", &url, "-c", "read -P 0x5a 0 4096"]));
    assert!(ok && !out.contains("failed"), "{out}");
    let (_, out) =
        run(Command::new("qemu-io").args(["-f", "raw", &url, "-c", "write -P 1 0 4096"]));
    assert!(
        out.contains("Operation not permitted")
            || out.contains("Permission denied")
            || out.contains("read-only")
            || out.contains("Read-only"),
        "{out}"
    );
}

#[test]
fn nbdinfo_lists_nothing_and_unknown_names_get_nothing() {
    if !tool_available("nbdinfo") {
        eprintln!("nbdinfo missing (Debian libnbd-bin); scripts/test.sh installs it");
        return;
    }
    let (addr, _rw, _rt) = start();
    let (ok, out) = run(Command::new("nbdinfo").args(["--list", &format!("nbd://{addr}")]));
    assert!(ok, "{out}");
    assert!(
        !out.contains("rw-3f9c2a") && !out.contains("ro-77d1e0"),
        "{out}"
    );
    let (ok, out) = run(Command::new("nbdinfo").arg(format!("nbd://{addr}/rw-guess")));
    assert!(!ok, "{out}");
    let (ok, out) =
        run(Command::new("nbdinfo").args(["--size", &format!("nbd://{addr}/rw-3f9c2a")]));
    assert!(ok, "{out}");
    assert_eq!(out.trim(), (16u64 << 20).to_string());
    let (ok, out) = run(Command::new("nbdinfo").arg(format!("nbd://{addr}/ro-77d1e0")));
    assert!(ok && out.contains("is_read_only: true"), "{out}");
}

// ---- hostile byte streams -------------------------------------------------

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 18];
    (&s).read_exact(&mut greeting).unwrap();
    assert_eq!(greeting, proto::greeting());
    s
}

fn option(s: &mut TcpStream, option: u32, data: &[u8]) {
    let mut b = proto::IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    s.write_all(&b).unwrap();
}

/// Reads one option reply: (option, reply type, data).
fn option_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(
        u64::from_be_bytes(h[..8].try_into().unwrap()),
        proto::OPTION_REPLY_MAGIC
    );
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut data = vec![0u8; len];
    s.read_exact(&mut data).unwrap();
    (
        u32::from_be_bytes(h[8..12].try_into().unwrap()),
        u32::from_be_bytes(h[12..16].try_into().unwrap()),
        data,
    )
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Negotiates `name` with OPT_GO; returns the stream in transmission.
fn go(addr: SocketAddr, name: &str) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut data = (name.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(name.as_bytes());
    data.extend_from_slice(&0u16.to_be_bytes());
    option(&mut s, proto::OPT_GO, &data);
    loop {
        let (_, kind, _) = option_reply(&mut s);
        if kind == proto::REP_ACK {
            return s;
        }
        assert_eq!(kind, proto::REP_INFO);
    }
}

fn request(s: &mut TcpStream, command: u16, cookie: u64, offset: u64, length: u32) {
    let mut b = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&command.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    s.write_all(&b).unwrap();
}

fn simple_reply(s: &mut TcpStream) -> (u32, u64) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(
        u32::from_be_bytes(h[..4].try_into().unwrap()),
        proto::SIMPLE_REPLY_MAGIC
    );
    (
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
    )
}

#[test]
fn malformed_handshakes_are_refused_without_harm() {
    let (addr, _rw, _rt) = start();
    // Client flags without fixed newstyle.
    let mut s = connect(addr);
    s.write_all(&0u32.to_be_bytes()).unwrap();
    assert!(closed(&mut s));
    // Bad option magic.
    let mut s = connect(addr);
    s.write_all(&1u32.to_be_bytes()).unwrap();
    s.write_all(&[0xffu8; 16]).unwrap();
    assert!(closed(&mut s));
    // Oversized option length.
    let mut s = connect(addr);
    s.write_all(&1u32.to_be_bytes()).unwrap();
    let mut b = proto::IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    s.write_all(&b).unwrap();
    assert!(closed(&mut s));
    // Unknown options, TLS and extended headers are politely refused;
    // meta contexts need structured replies first, and malformed ones are
    // answered; a malformed GO is answered; an unknown export is unknown.
    let mut s = connect(addr);
    s.write_all(&1u32.to_be_bytes()).unwrap();
    for opt in [proto::OPT_STARTTLS, 11, 0xdead] {
        option(&mut s, opt, &[]);
        assert_eq!(option_reply(&mut s).1, proto::REP_ERR_UNSUP);
    }
    option(&mut s, proto::OPT_SET_META_CONTEXT, &[0; 8]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_INVALID);
    option(&mut s, proto::OPT_STRUCTURED_REPLY, &[1]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_INVALID);
    option(&mut s, proto::OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ACK);
    option(&mut s, proto::OPT_SET_META_CONTEXT, &[0, 0, 0, 9, 1]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_INVALID);
    let mut unknown = 5u32.to_be_bytes().to_vec();
    unknown.extend_from_slice(b"guess");
    unknown.extend_from_slice(&0u32.to_be_bytes());
    option(&mut s, proto::OPT_LIST_META_CONTEXT, &unknown);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_UNKNOWN);
    option(&mut s, proto::OPT_GO, &[0, 0, 0, 200, b'x']);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_INVALID);
    let mut data = 5u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"guess\0\0");
    option(&mut s, proto::OPT_INFO, &data);
    assert_eq!(option_reply(&mut s).1, proto::REP_ERR_UNKNOWN);
    option(&mut s, proto::OPT_LIST, &[]);
    assert_eq!(
        option_reply(&mut s).1,
        proto::REP_ACK,
        "no export is listed"
    );
    option(&mut s, proto::OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut s).1, proto::REP_ACK);
    assert!(closed(&mut s));
    // EXPORT_NAME with an unknown name: the connection closes.
    let mut s = connect(addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    option(&mut s, proto::OPT_EXPORT_NAME, b"nope");
    assert!(closed(&mut s));
}

#[test]
fn malformed_requests_get_errors_and_the_server_keeps_serving() {
    let (addr, rw, _rt) = start();
    let mut s = go(addr, "rw-3f9c2a");
    // Out of range read and write (the write's payload is consumed).
    request(&mut s, proto::CMD_READ, 1, 16 << 20, 1);
    assert_eq!(simple_reply(&mut s), (proto::EINVAL, 1));
    request(&mut s, proto::CMD_WRITE, 2, u64::MAX - 1, 4);
    s.write_all(&[9, 9, 9, 9]).unwrap();
    assert_eq!(simple_reply(&mut s), (proto::ENOSPC, 2));
    // Unknown command.
    request(&mut s, 77, 3, 0, 0);
    assert_eq!(simple_reply(&mut s), (proto::EINVAL, 3));
    // Too large a read.
    request(&mut s, proto::CMD_READ, 4, 0, proto::MAX_PAYLOAD + 1);
    assert_eq!(simple_reply(&mut s), (proto::EOVERFLOW, 4));
    // Still in sync: a good write and read.
    request(&mut s, proto::CMD_WRITE, 5, 512, 4);
    s.write_all(&[1, 2, 3, 4]).unwrap();
    assert_eq!(simple_reply(&mut s), (0, 5));
    request(&mut s, proto::CMD_READ, 6, 512, 4);
    assert_eq!(simple_reply(&mut s), (0, 6));
    let mut data = [0u8; 4];
    s.read_exact(&mut data).unwrap();
    assert_eq!(data, [1, 2, 3, 4]);
    // Bad request magic closes the connection.
    s.write_all(&[0u8; 28]).unwrap();
    assert!(closed(&mut s));

    // A write whose payload never fully arrives changes nothing.
    let mut s = go(addr, "rw-3f9c2a");
    request(&mut s, proto::CMD_WRITE, 7, 1 << 20, 65536);
    s.write_all(&[0xaa; 1000]).unwrap();
    drop(s);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        rw.bytes.lock().unwrap()[1 << 20..(1 << 20) + 1000]
            .iter()
            .all(|&b| b == 0)
    );

    // A write larger than the maximum payload closes the connection.
    let mut s = go(addr, "rw-3f9c2a");
    request(&mut s, proto::CMD_WRITE, 8, 0, proto::MAX_PAYLOAD + 1);
    assert!(closed(&mut s));

    // Pipelined requests are all answered.
    let mut s = go(addr, "rw-3f9c2a");
    for cookie in 100..164u64 {
        request(&mut s, proto::CMD_READ, cookie, cookie * 4096, 4096);
    }
    let mut seen = Vec::new();
    for _ in 0..64 {
        let (err, cookie) = simple_reply(&mut s);
        assert_eq!(err, 0);
        let mut data = vec![0u8; 4096];
        s.read_exact(&mut data).unwrap();
        seen.push(cookie);
    }
    seen.sort();
    assert_eq!(seen, (100..164).collect::<Vec<_>>());
    request(&mut s, proto::CMD_DISC, 0, 0, 0);
    assert!(closed(&mut s));
}
