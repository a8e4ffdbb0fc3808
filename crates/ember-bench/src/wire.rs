//! A minimal blocking HTTP/1.1 client over one keep-alive connection.
//!
//! The benchmark's clients share the machine's two cores with the server,
//! so every microsecond a client spends is one the server does not get.
//! reqwest's blocking client runs every request through one background
//! runtime thread (two thread hand-offs per request, and all 32 clients
//! funnelled through that one thread); this client writes the request and
//! reads the response on the calling thread. It speaks just what Ember
//! answers: a status line, headers, and a body framed by Content-Length or
//! chunked encoding.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

pub struct Conn {
    /// `host:port`.
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Conn {
    /// `base` is `http://host:port`.
    pub fn new(base: &str) -> Result<Conn> {
        let addr = base
            .strip_prefix("http://")
            .context("only http:// URLs")?
            .trim_end_matches('/')
            .to_string();
        Ok(Conn { addr, stream: None })
    }

    /// Sends one request; on a connection the server has closed meanwhile,
    /// reconnects once and sends it again.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, headers, body) {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.stream = None;
                self.try_request(method, path, headers, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let stream = self.stream.as_mut().expect("connected above");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        stream.get_mut().write_all(&out)?;
        match read_response(stream, method == "HEAD") {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The response, and whether the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> Result<(Response, bool)> {
    let status_line = read_line(r)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse::<usize>()?),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = vec![];
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
    } else if chunked {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
        close = true;
    }
    Ok((Response { status, body }, !close))
}
