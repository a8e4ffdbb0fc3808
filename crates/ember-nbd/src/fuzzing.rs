//! A whole server session driven by arbitrary client bytes, shared by the
//! cargo-fuzz target (`fuzz/`) and the stable test below: whatever the
//! bytes, the server must answer or close, never panic or hang, and never
//! write outside the export.

use crate::{Device, Exports, serve_connection};
use std::io;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: usize = 1 << 20;

struct Memory(Mutex<Vec<u8>>);

impl Device for Memory {
    fn size(&self) -> u64 {
        SIZE as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.0.lock().unwrap();
        buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut b = self.0.lock().unwrap();
        b[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        let mut b = self.0.lock().unwrap();
        b[offset as usize..(offset + length) as usize].fill(0);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

struct One(Arc<Memory>);

impl Exports for One {
    fn open(&self, name: &str) -> Option<Arc<dyn Device>> {
        (name == "fuzz").then(|| self.0.clone() as Arc<dyn Device>)
    }
}

/// The client bytes of a valid handshake choosing export `fuzz` with
/// `NBD_OPT_GO`, so inputs can start in the transmission phase.
pub fn handshake() -> Vec<u8> {
    let mut b = 3u32.to_be_bytes().to_vec();
    b.extend_from_slice(&crate::proto::IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&crate::proto::OPT_GO.to_be_bytes());
    b.extend_from_slice(&(4u32 + 4 + 2).to_be_bytes());
    b.extend_from_slice(&4u32.to_be_bytes());
    b.extend_from_slice(b"fuzz");
    b.extend_from_slice(&0u16.to_be_bytes());
    b
}

/// Runs one session. The first input byte picks the phase: odd starts
/// after a valid handshake, even feeds the handshake itself.
pub fn run_session(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut client_bytes = if mode & 1 == 1 {
        handshake()
    } else {
        Vec::new()
    };
    client_bytes.extend_from_slice(rest);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let memory = Arc::new(Memory(Mutex::new(vec![0; SIZE])));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(serve_connection(server, Arc::new(One(memory.clone()))));
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let feed = async {
            let _ = wr.write_all(&client_bytes).await;
            let _ = wr.shutdown().await;
        };
        let drain = async {
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        tokio::join!(feed, drain);
        drop(client);
        let _ = session.await.expect("the session task must not panic");
        assert_eq!(memory.0.lock().unwrap().len(), SIZE);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift so the corpus is the same on every run.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_mutated_sessions_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let valid_read = {
            let mut r = crate::proto::REQUEST_MAGIC.to_be_bytes().to_vec();
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&1u64.to_be_bytes());
            r.extend_from_slice(&0u64.to_be_bytes());
            r.extend_from_slice(&4096u32.to_be_bytes());
            r
        };
        for i in 0..3000 {
            let len = (next(&mut seed) % 200) as usize;
            let mut input: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
            if i % 3 == 0 {
                // Mostly-valid requests with a few flipped bytes.
                input = vec![1];
                for _ in 0..4 {
                    input.extend_from_slice(&valid_read);
                }
                for _ in 0..3 {
                    let at = (next(&mut seed) as usize) % input.len();
                    input[at] = next(&mut seed) as u8;
                }
            }
            run_session(&input);
        }
    }
}
