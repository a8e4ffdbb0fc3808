//! A minimal blocking NBD client (fixed newstyle, `NBD_OPT_GO`, simple
//! replies, one request at a time), so tests see exactly which requests
//! the server acknowledged and with which error.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const FLAG_FUA: u16 = 1;
pub const TF_READ_ONLY: u16 = 1 << 1;

pub struct NbdClient {
    stream: TcpStream,
    pub size: u64,
    pub flags: u16,
    cookie: u64,
}

/// Parses `nbd://host:port/name`.
pub fn parse_uri(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("nbd://").expect("an nbd:// URI");
    let (addr, name) = rest.split_once('/').expect("an export name");
    (addr.to_string(), name.to_string())
}

impl NbdClient {
    /// Connects to the export of `uri`; `Err` with the option reply type
    /// when the server refuses the name.
    pub fn connect(uri: &str) -> Result<NbdClient, String> {
        let (addr, name) = parse_uri(uri);
        let mut stream = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut greeting = [0u8; 18];
        stream
            .read_exact(&mut greeting)
            .map_err(|e| e.to_string())?;
        assert_eq!(
            u64::from_be_bytes(greeting[..8].try_into().unwrap()),
            NBD_MAGIC
        );
        // Fixed newstyle, no zeroes.
        stream.write_all(&3u32.to_be_bytes()).unwrap();
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        let mut opt = IHAVEOPT.to_be_bytes().to_vec();
        opt.extend_from_slice(&OPT_GO.to_be_bytes());
        opt.extend_from_slice(&(data.len() as u32).to_be_bytes());
        opt.extend_from_slice(&data);
        stream.write_all(&opt).map_err(|e| e.to_string())?;
        let (mut size, mut flags) = (0, 0);
        loop {
            let mut h = [0u8; 20];
            stream.read_exact(&mut h).map_err(|e| e.to_string())?;
            assert_eq!(
                u64::from_be_bytes(h[..8].try_into().unwrap()),
                OPTION_REPLY_MAGIC
            );
            let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).map_err(|e| e.to_string())?;
            match kind {
                REP_ACK => break,
                REP_INFO => {
                    if body.len() == 12 && body[..2] == [0, 0] {
                        size = u64::from_be_bytes(body[2..10].try_into().unwrap());
                        flags = u16::from_be_bytes(body[10..12].try_into().unwrap());
                    }
                }
                other => return Err(format!("export refused: reply {other:#x}")),
            }
        }
        Ok(NbdClient {
            stream,
            size,
            flags,
            cookie: 0,
        })
    }

    pub fn read_only(&self) -> bool {
        self.flags & TF_READ_ONLY != 0
    }

    fn send(&mut self, command: u16, flags: u16, offset: u64, length: u32, payload: &[u8]) -> u64 {
        self.cookie += 1;
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&command.to_be_bytes());
        b.extend_from_slice(&self.cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(payload);
        self.stream.write_all(&b).expect("send an NBD request");
        self.cookie
    }

    /// The reply's error (0: success).
    fn reply(&mut self, cookie: u64) -> Result<u32, std::io::Error> {
        let mut h = [0u8; 16];
        self.stream.read_exact(&mut h)?;
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        assert_eq!(u64::from_be_bytes(h[8..16].try_into().unwrap()), cookie);
        Ok(u32::from_be_bytes(h[4..8].try_into().unwrap()))
    }

    /// Writes `data` at `offset` (with FUA when `fua`); `Err(errno)` when
    /// the server answered an error, `Err(u32::MAX)` when the connection
    /// ended without an answer.
    pub fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), u32> {
        let cookie = self.send(
            CMD_WRITE,
            if fua { FLAG_FUA } else { 0 },
            offset,
            data.len() as u32,
            data,
        );
        match self.reply(cookie) {
            Ok(0) => Ok(()),
            Ok(e) => Err(e),
            Err(_) => Err(u32::MAX),
        }
    }

    pub fn flush(&mut self) -> Result<(), u32> {
        let cookie = self.send(CMD_FLUSH, 0, 0, 0, &[]);
        match self.reply(cookie) {
            Ok(0) => Ok(()),
            Ok(e) => Err(e),
            Err(_) => Err(u32::MAX),
        }
    }

    pub fn read(&mut self, offset: u64, length: u32) -> Result<Vec<u8>, u32> {
        let cookie = self.send(CMD_READ, 0, offset, length, &[]);
        match self.reply(cookie) {
            Ok(0) => {
                let mut buf = vec![0u8; length as usize];
                self.stream.read_exact(&mut buf).map_err(|_| u32::MAX)?;
                Ok(buf)
            }
            Ok(e) => Err(e),
            Err(_) => Err(u32::MAX),
        }
    }

    pub fn disconnect(mut self) {
        let _ = self.send(CMD_DISC, 0, 0, 0, &[]);
    }
}
