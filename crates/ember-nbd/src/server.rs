//! Connection handling: negotiation, then the pipelined transmission loop.

use crate::proto::{self, Action, ProtoError};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

/// A block device behind an export. Calls block; the server runs them on
/// tokio's blocking pool.
pub trait Device: Send + Sync + 'static {
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn write_zeroes(&self, offset: u64, length: u64) -> io::Result<()>;
    /// A hint that the range is unused; succeeding without doing anything
    /// is allowed by the protocol.
    fn trim(&self, _offset: u64, _length: u64) -> io::Result<()> {
        Ok(())
    }
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// False once the export was withdrawn (its attachment deleted): the
    /// connection then gets `ESHUTDOWN` and is closed.
    fn is_live(&self) -> bool {
        true
    }
    /// What `[offset, offset + length)` holds, as consecutive runs of
    /// (length, `NBD_STATE_HOLE`/`NBD_STATE_ZERO` flags) from `offset`, for
    /// the `base:allocation` meta context. None when the device cannot
    /// tell: the whole range is then reported as data.
    fn extents(&self, _offset: u64, _length: u64) -> io::Result<Option<Vec<(u64, u32)>>> {
        Ok(None)
    }
    /// The meta contexts besides `base:allocation` this device serves
    /// that `query` names (a full name; a listing may also ask for a
    /// namespace, `ns:`).
    fn meta_contexts(&self, _query: &str) -> Vec<String> {
        Vec::new()
    }
    /// Block status in a context `meta_contexts` named: (length, flags)
    /// runs from `offset`.
    fn context_status(
        &self,
        _context: &str,
        _offset: u64,
        _length: u64,
    ) -> io::Result<Vec<(u64, u32)>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Most meta contexts one connection may select.
const MAX_CONTEXTS: usize = 8;

/// What negotiation settled besides the export.
#[derive(Clone, Debug, Default)]
struct Session {
    /// Structured replies (`NBD_OPT_STRUCTURED_REPLY`) were agreed.
    structured: bool,
    /// The meta contexts selected (`NBD_OPT_SET_META_CONTEXT`; context id
    /// = index + 1), for the export of this name.
    contexts: Vec<String>,
    contexts_for: Option<String>,
}

/// Resolves export names. Blocking: it may consult the metadata store.
pub trait Exports: Send + Sync + 'static {
    fn open(&self, name: &str) -> Option<Arc<dyn Device>>;
    /// The names `NBD_OPT_LIST` reveals to an unauthenticated client.
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Requests in flight per connection.
const MAX_IN_FLIGHT: usize = 32;

/// What one server lets its clients cost. Every request's payload (the
/// data of a WRITE as it is read, the buffer of a READ until its reply has
/// been written to the socket) is counted against its connection's budget
/// and the server's: a client that stops reading its replies stops being
/// read from (back-pressure), and one that never reads again is cut off
/// after `reply_timeout`, so its memory comes back.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Connections still negotiating (no export chosen yet) at most: the
    /// ones anyone who reaches the port can open without a secret.
    pub max_negotiating: usize,
    /// Negotiation must finish within this time.
    pub negotiation_timeout: Duration,
    /// Payload bytes one connection may hold.
    pub connection_bytes: usize,
    /// Payload bytes all connections together may hold.
    pub server_bytes: usize,
    /// A reply (each MiB of it) the client does not take within this time
    /// ends the connection.
    pub reply_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_negotiating: 128,
            negotiation_timeout: Duration::from_secs(10),
            connection_bytes: 2 * proto::MAX_PAYLOAD as usize,
            server_bytes: 512 << 20,
            reply_timeout: Duration::from_secs(30),
        }
    }
}

/// Budgets are counted in KiB (permits are u32 per acquire).
const UNIT: usize = 1024;

fn units(bytes: usize) -> u32 {
    bytes.div_ceil(UNIT).max(1) as u32
}

/// State shared by every connection of one server.
struct Shared {
    limits: Limits,
    connections: Arc<Semaphore>,
    negotiating: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// Accepts connections until the process ends; one task per connection.
/// Accept errors (out of descriptors, aborted connections) are logged and
/// waited out: they never end the listener.
pub async fn serve(listener: TcpListener, exports: Arc<dyn Exports>, limits: Limits) {
    // Every series exists from the start, at zero.
    let m = ember_metrics::metrics();
    for op in ["read", "write", "write_zeroes", "trim", "flush"] {
        for result in ["ok", "error"] {
            m.nbd_requests.with_label_values(&[op, result]);
        }
    }
    for direction in ["read", "written"] {
        m.nbd_bytes.with_label_values(&[direction]);
    }
    let shared = Arc::new(Shared {
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        negotiating: Arc::new(Semaphore::new(limits.max_negotiating)),
        bytes: Arc::new(Semaphore::new(limits.server_bytes / UNIT)),
        limits,
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "nbd accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = shared.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "nbd connection limit reached; closing");
            continue;
        };
        let Ok(negotiating) = shared.negotiating.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many nbd connections negotiating; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let exports = exports.clone();
        let shared = shared.clone();
        let connections = &ember_metrics::metrics().nbd_connections;
        connections.inc();
        tokio::spawn(async move {
            match serve_limited(stream, exports, &shared, negotiating).await {
                Ok(()) => tracing::debug!(%peer, "nbd client disconnected"),
                Err(e) => tracing::info!(%peer, error = %e, "nbd connection closed"),
            }
            ember_metrics::metrics().nbd_connections.dec();
            drop(slot);
        });
    }
}

fn invalid(e: ProtoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Serves one client from greeting to disconnect, with default limits
/// (for tests and fuzzing; `serve` shares its limits between clients).
pub async fn serve_connection<S>(stream: S, exports: Arc<dyn Exports>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limits = Limits::default();
    let shared = Shared {
        connections: Arc::new(Semaphore::new(1)),
        negotiating: Arc::new(Semaphore::new(1)),
        bytes: Arc::new(Semaphore::new(limits.server_bytes / UNIT)),
        limits,
    };
    let negotiating = shared
        .negotiating
        .clone()
        .try_acquire_owned()
        .expect("a fresh semaphore has a permit");
    serve_limited(stream, exports, &shared, negotiating).await
}

async fn serve_limited<S>(
    stream: S,
    exports: Arc<dyn Exports>,
    shared: &Shared,
    negotiating: tokio::sync::OwnedSemaphorePermit,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(256 * 1024, rd);
    let mut wr = BufWriter::with_capacity(256 * 1024, wr);
    let device = match tokio::time::timeout(
        shared.limits.negotiation_timeout,
        negotiate(&mut rd, &mut wr, &exports),
    )
    .await
    {
        Ok(result) => result?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "negotiation timed out",
            ));
        }
    };
    drop(negotiating);
    match device {
        Some((device, session)) => transmit(rd, wr, device, session, shared).await,
        None => Ok(()),
    }
}

type Reader<S> = BufReader<tokio::io::ReadHalf<S>>;
type Writer<S> = BufWriter<tokio::io::WriteHalf<S>>;

async fn reply<W: AsyncWrite + Unpin>(
    wr: &mut W,
    option: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    wr.write_all(&proto::option_reply(option, kind, data))
        .await?;
    wr.flush().await
}

fn transmission_flags(device: &dyn Device) -> u16 {
    let mut flags = proto::TF_HAS_FLAGS
        | proto::TF_SEND_FLUSH
        | proto::TF_SEND_FUA
        | proto::TF_SEND_TRIM
        | proto::TF_SEND_WRITE_ZEROES
        // Every connection to an export shares one open image, so a flush
        // on any of them covers writes completed on all of them.
        | proto::TF_CAN_MULTI_CONN;
    if device.read_only() {
        flags |= proto::TF_READ_ONLY;
    }
    flags
}

async fn open_export(exports: &Arc<dyn Exports>, name: &str) -> Option<Arc<dyn Device>> {
    let exports = exports.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || exports.open(&name))
        .await
        .ok()
        .flatten()
}

/// Runs the option haggling; `Some(device)` when the client chose an export.
async fn negotiate<S>(
    rd: &mut Reader<S>,
    wr: &mut Writer<S>,
    exports: &Arc<dyn Exports>,
) -> io::Result<Option<(Arc<dyn Device>, Session)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::default();
    wr.write_all(&proto::greeting()).await?;
    wr.flush().await?;
    let mut flags = [0u8; 4];
    rd.read_exact(&mut flags).await?;
    let no_zeroes = proto::parse_client_flags(flags).map_err(invalid)?;
    loop {
        let mut header = [0u8; proto::OPTION_HEADER_LEN];
        rd.read_exact(&mut header).await?;
        let (option, length) = proto::parse_option_header(&header).map_err(invalid)?;
        let mut data = vec![0u8; length as usize];
        rd.read_exact(&mut data).await?;
        match option {
            proto::OPT_EXPORT_NAME => {
                // No way to report an error here but closing the connection.
                let name = proto::parse_export_name(&data).map_err(invalid)?;
                let Some(device) = open_export(exports, &name).await else {
                    return Err(io::Error::new(io::ErrorKind::NotFound, "unknown export"));
                };
                wr.write_all(&device.size().to_be_bytes()).await?;
                wr.write_all(&transmission_flags(device.as_ref()).to_be_bytes())
                    .await?;
                if !no_zeroes {
                    wr.write_all(&[0u8; 124]).await?;
                }
                wr.flush().await?;
                if session.contexts_for.as_deref() != Some(name.as_str()) {
                    session.contexts.clear();
                }
                return Ok(Some((device, session)));
            }
            proto::OPT_ABORT => {
                let _ = reply(wr, option, proto::REP_ACK, &[]).await;
                return Ok(None);
            }
            proto::OPT_LIST => {
                if !data.is_empty() {
                    reply(wr, option, proto::REP_ERR_INVALID, b"LIST takes no data").await?;
                    continue;
                }
                for name in exports.list() {
                    let mut entry = (name.len() as u32).to_be_bytes().to_vec();
                    entry.extend_from_slice(name.as_bytes());
                    wr.write_all(&proto::option_reply(option, proto::REP_SERVER, &entry))
                        .await?;
                }
                reply(wr, option, proto::REP_ACK, &[]).await?;
            }
            proto::OPT_INFO | proto::OPT_GO => {
                let request = match proto::parse_info_request(&data) {
                    Ok(r) => r,
                    Err(_) => {
                        reply(wr, option, proto::REP_ERR_INVALID, b"malformed request").await?;
                        continue;
                    }
                };
                let Some(device) = open_export(exports, &request.name).await else {
                    // One answer for "no such export" and "not yours".
                    reply(wr, option, proto::REP_ERR_UNKNOWN, b"unknown export").await?;
                    continue;
                };
                let info = proto::info_export(device.size(), transmission_flags(device.as_ref()));
                wr.write_all(&proto::option_reply(option, proto::REP_INFO, &info))
                    .await?;
                if request.requests.contains(&proto::INFO_BLOCK_SIZE) {
                    let sizes = proto::info_block_size();
                    wr.write_all(&proto::option_reply(option, proto::REP_INFO, &sizes))
                        .await?;
                }
                if request.requests.contains(&proto::INFO_NAME) {
                    let name = proto::info_name(&request.name);
                    wr.write_all(&proto::option_reply(option, proto::REP_INFO, &name))
                        .await?;
                }
                reply(wr, option, proto::REP_ACK, &[]).await?;
                if option == proto::OPT_GO {
                    // A context selected for another export does not apply.
                    if session.contexts_for.as_deref() != Some(request.name.as_str()) {
                        session.contexts.clear();
                    }
                    return Ok(Some((device, session)));
                }
            }
            proto::OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    reply(wr, option, proto::REP_ERR_INVALID, b"takes no data").await?;
                    continue;
                }
                session.structured = true;
                reply(wr, option, proto::REP_ACK, &[]).await?;
            }
            proto::OPT_LIST_META_CONTEXT | proto::OPT_SET_META_CONTEXT => {
                if !session.structured {
                    reply(
                        wr,
                        option,
                        proto::REP_ERR_INVALID,
                        b"structured replies first",
                    )
                    .await?;
                    continue;
                }
                let request = match proto::parse_meta_context_request(&data) {
                    Ok(r) => r,
                    Err(_) => {
                        reply(wr, option, proto::REP_ERR_INVALID, b"malformed request").await?;
                        continue;
                    }
                };
                let Some(device) = open_export(exports, &request.name).await else {
                    reply(wr, option, proto::REP_ERR_UNKNOWN, b"unknown export").await?;
                    continue;
                };
                let listing = option == proto::OPT_LIST_META_CONTEXT;
                let mut matched: Vec<String> = Vec::new();
                let base_wanted = request
                    .queries
                    .iter()
                    .any(|q| q == proto::BASE_ALLOCATION || (listing && q == "base:"))
                    || (listing && request.queries.is_empty());
                if base_wanted {
                    matched.push(proto::BASE_ALLOCATION.to_string());
                }
                for query in &request.queries {
                    let device = device.clone();
                    let query = query.clone();
                    let more = tokio::task::spawn_blocking(move || device.meta_contexts(&query))
                        .await
                        .unwrap_or_default();
                    for name in more {
                        if !matched.contains(&name) {
                            matched.push(name);
                        }
                    }
                }
                matched.truncate(MAX_CONTEXTS);
                for (i, name) in matched.iter().enumerate() {
                    let payload = proto::meta_context(i as u32 + 1, name);
                    wr.write_all(&proto::option_reply(
                        option,
                        proto::REP_META_CONTEXT,
                        &payload,
                    ))
                    .await?;
                }
                if !listing {
                    session.contexts = matched;
                    session.contexts_for = Some(request.name.clone());
                }
                reply(wr, option, proto::REP_ACK, &[]).await?;
            }
            // TLS, extended headers and anything newer: not offered;
            // clients fall back.
            _ => reply(wr, option, proto::REP_ERR_UNSUP, &[]).await?,
        }
    }
}

/// What a successful reply carries, for structured replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carries {
    Nothing,
    /// Read data from this offset.
    Data(u64),
    /// A `base:allocation` block status payload.
    Status,
}

struct Reply {
    cookie: u64,
    error: u32,
    carries: Carries,
    data: Vec<u8>,
    /// The payload's share of the budgets, returned once the reply is
    /// written to the socket.
    held: Vec<tokio::sync::OwnedSemaphorePermit>,
}

fn errno(e: &io::Error) -> u32 {
    match e.raw_os_error() {
        Some(28) => proto::ENOSPC,
        Some(12) => proto::ENOMEM,
        _ if e.kind() == io::ErrorKind::StorageFull => proto::ENOSPC,
        _ if e.kind() == io::ErrorKind::InvalidInput => proto::EINVAL,
        _ if e.kind() == io::ErrorKind::PermissionDenied => proto::EPERM,
        _ => proto::EIO,
    }
}

/// The operation's name and the payload bytes it moves (read, written),
/// for the metrics.
fn op_of(action: &Action, payload: usize) -> (&'static str, &'static str, u64) {
    match action {
        Action::Read { length, .. } => ("read", "read", *length as u64),
        Action::Write { .. } => ("write", "written", payload as u64),
        Action::WriteZeroes { .. } => ("write_zeroes", "written", 0),
        Action::Trim { .. } => ("trim", "written", 0),
        Action::BlockStatus { .. } => ("block_status", "read", 0),
        _ => ("flush", "written", 0),
    }
}

/// Runs one request on the blocking pool; returns its reply.
async fn execute(
    device: Arc<dyn Device>,
    cookie: u64,
    action: Action,
    payload: Vec<u8>,
    contexts: Arc<Vec<String>>,
) -> Reply {
    let (op, direction, bytes) = op_of(&action, payload.len());
    let reply = execute_inner(device, cookie, action, payload, contexts).await;
    let m = ember_metrics::metrics();
    let result = if reply.error == 0 { "ok" } else { "error" };
    m.nbd_requests.with_label_values(&[op, result]).inc();
    if reply.error == 0 && bytes > 0 {
        m.nbd_bytes.with_label_values(&[direction]).inc_by(bytes);
    }
    reply
}

async fn execute_inner(
    device: Arc<dyn Device>,
    cookie: u64,
    action: Action,
    payload: Vec<u8>,
    contexts: Arc<Vec<String>>,
) -> Reply {
    let carries = match action {
        Action::Read { offset, .. } => Carries::Data(offset),
        Action::BlockStatus { .. } => Carries::Status,
        _ => Carries::Nothing,
    };
    let result = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
        if !device.is_live() {
            return Err(io::Error::from_raw_os_error(proto::ESHUTDOWN as i32));
        }
        let flush_if = |fua: bool| if fua { device.flush() } else { Ok(()) };
        match action {
            Action::Read { offset, length } => {
                let mut buf = vec![0u8; length as usize];
                device.read(&mut buf, offset)?;
                Ok(buf)
            }
            Action::Write { offset, fua, .. } => {
                device.write(&payload, offset)?;
                flush_if(fua)?;
                Ok(Vec::new())
            }
            Action::WriteZeroes {
                offset,
                length,
                fua,
            } => {
                device.write_zeroes(offset, length as u64)?;
                flush_if(fua)?;
                Ok(Vec::new())
            }
            Action::Trim {
                offset,
                length,
                fua,
            } => {
                device.trim(offset, length as u64)?;
                flush_if(fua)?;
                Ok(Vec::new())
            }
            Action::Flush => device.flush().map(|()| Vec::new()),
            Action::BlockStatus {
                offset,
                length,
                req_one,
            } => {
                // One chunk per selected context, the last one DONE.
                let mut wire = Vec::new();
                for (i, name) in contexts.iter().enumerate() {
                    let runs = if name == proto::BASE_ALLOCATION {
                        device
                            .extents(offset, length as u64)?
                            .unwrap_or_else(|| vec![(length as u64, 0)])
                    } else {
                        device.context_status(name, offset, length as u64)?
                    };
                    let body = block_status_payload(i as u32 + 1, &runs, length, req_one);
                    let flags = if i + 1 == contexts.len() {
                        proto::REPLY_FLAG_DONE
                    } else {
                        0
                    };
                    wire.extend_from_slice(&proto::structured_header(
                        flags,
                        proto::REPLY_TYPE_BLOCK_STATUS,
                        cookie,
                        body.len() as u32,
                    ));
                    wire.extend_from_slice(&body);
                }
                Ok(wire)
            }
            Action::Disconnect | Action::Close | Action::Refuse { .. } => {
                unreachable!("answered without I/O")
            }
        }
    })
    .await;
    match result {
        Ok(Ok(data)) => Reply {
            cookie,
            error: 0,
            carries,
            data,
            held: Vec::new(),
        },
        Ok(Err(e)) => {
            let error = match e.raw_os_error() {
                Some(code) if code as u32 == proto::ESHUTDOWN => proto::ESHUTDOWN,
                _ => errno(&e),
            };
            if error != proto::ESHUTDOWN {
                tracing::warn!(error = %e, "nbd request failed");
            }
            Reply {
                cookie,
                error,
                carries,
                data: Vec::new(),
                held: Vec::new(),
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "nbd request task failed");
            Reply {
                cookie,
                error: proto::EIO,
                carries,
                data: Vec::new(),
                held: Vec::new(),
            }
        }
    }
}

/// The payload of a block status chunk: the context id, then (length,
/// flags) descriptors covering at most `length` bytes from the request's
/// offset (one descriptor with `req_one`), none empty.
fn block_status_payload(context: u32, runs: &[(u64, u32)], length: u32, req_one: bool) -> Vec<u8> {
    let mut out = context.to_be_bytes().to_vec();
    let mut left = length as u64;
    for &(run, flags) in runs {
        let run = run.min(left);
        if run == 0 {
            continue;
        }
        out.extend_from_slice(&(run as u32).to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        left -= run;
        if req_one || left == 0 {
            break;
        }
    }
    if out.len() == 4 {
        // The device said nothing about the range: data.
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
    }
    out
}

/// Writes `data` in slices of at most 1 MiB, each of which must go out
/// within `timeout`: a client reading slowly is served, one that stopped
/// reading is cut off.
async fn write_paced<W: AsyncWrite + Unpin>(
    wr: &mut W,
    data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    for slice in data.chunks(1 << 20) {
        tokio::time::timeout(timeout, wr.write_all(slice))
            .await
            .map_err(|_| stalled())??;
    }
    Ok(())
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client stopped reading replies",
    )
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut replies: mpsc::Receiver<Reply>,
    timeout: Duration,
    structured: bool,
) -> io::Result<bool> {
    let mut shutdown = false;
    while let Some(r) = replies.recv().await {
        if !structured {
            write_paced(&mut wr, &proto::simple_reply(r.cookie, r.error), timeout).await?;
            if r.error == 0 {
                write_paced(&mut wr, &r.data, timeout).await?;
            }
        } else if r.error != 0 {
            let mut chunk = proto::structured_header(
                proto::REPLY_FLAG_DONE,
                proto::REPLY_TYPE_ERROR,
                r.cookie,
                6,
            )
            .to_vec();
            chunk.extend_from_slice(&r.error.to_be_bytes());
            chunk.extend_from_slice(&0u16.to_be_bytes());
            write_paced(&mut wr, &chunk, timeout).await?;
        } else if r.carries == Carries::Status {
            // Chunks already framed, one per selected context.
            write_paced(&mut wr, &r.data, timeout).await?;
        } else {
            let (kind, prefix) = match r.carries {
                Carries::Data(offset) => {
                    (proto::REPLY_TYPE_OFFSET_DATA, offset.to_be_bytes().to_vec())
                }
                _ => (proto::REPLY_TYPE_NONE, Vec::new()),
            };
            let length = (prefix.len() + r.data.len()) as u32;
            let mut head =
                proto::structured_header(proto::REPLY_FLAG_DONE, kind, r.cookie, length).to_vec();
            head.extend_from_slice(&prefix);
            write_paced(&mut wr, &head, timeout).await?;
            write_paced(&mut wr, &r.data, timeout).await?;
        }
        if replies.is_empty() {
            tokio::time::timeout(timeout, wr.flush())
                .await
                .map_err(|_| stalled())??;
        }
        // Written (or in the socket buffer): its budget is free again.
        drop(r.held);
        shutdown |= r.error == proto::ESHUTDOWN;
        if shutdown {
            break;
        }
    }
    tokio::time::timeout(timeout, async {
        wr.flush().await?;
        wr.shutdown().await
    })
    .await
    .map_err(|_| stalled())??;
    Ok(shutdown)
}

/// Reads and discards `n` bytes of payload the server will not use.
async fn skip<R: AsyncRead + Unpin>(rd: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut rd.take(n), &mut tokio::io::sink()).await?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

async fn transmit<S>(
    mut rd: Reader<S>,
    wr: Writer<S>,
    device: Arc<dyn Device>,
    session: Session,
    shared: &Shared,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT * 2);
    let mut writer = tokio::spawn(write_replies(
        wr,
        rx,
        shared.limits.reply_timeout,
        session.structured,
    ));
    let contexts = Arc::new(session.contexts.clone());
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let connection_bytes = Arc::new(Semaphore::new(shared.limits.connection_bytes / UNIT));
    let size = device.size();
    let read_only = device.read_only();
    let outcome: io::Result<()> = async {
        loop {
            let mut header = [0u8; proto::REQUEST_HEADER_LEN];
            // A stalled writer (the client reads nothing) ends the
            // connection even while the client keeps sending.
            let read = tokio::select! {
                read = rd.read_exact(&mut header) => read,
                _ = &mut writer => return Ok(()),
            };
            match read {
                Ok(_) => {}
                // A client that hangs up without NBD_CMD_DISC is common.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let request = proto::parse_request(&header).map_err(invalid)?;
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let action = match proto::classify(&request, size, read_only) {
                // Block status only for a client that selected the context.
                Action::BlockStatus { .. } if contexts.is_empty() => Action::Refuse {
                    error: proto::EINVAL,
                    payload: 0,
                },
                action => action,
            };
            match action {
                Action::Disconnect => return Ok(()),
                Action::Close => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request too large",
                    ));
                }
                Action::Refuse { error, payload } => {
                    skip(&mut rd, payload as u64).await?;
                    let reply = Reply {
                        cookie: request.cookie,
                        error,
                        carries: Carries::Nothing,
                        data: Vec::new(),
                        held: Vec::new(),
                    };
                    if tx.send(reply).await.is_err() {
                        return Ok(());
                    }
                }
                action => {
                    // The payload's budget first (this connection's, then
                    // the server's): waiting here stops reading requests.
                    let bytes = match action {
                        Action::Write { length, .. } | Action::Read { length, .. } => {
                            length as usize
                        }
                        _ => 0,
                    };
                    let mut held = Vec::new();
                    if bytes > 0 {
                        let n = units(bytes);
                        held.push(
                            connection_bytes
                                .clone()
                                .acquire_many_owned(n)
                                .await
                                .expect("never closed"),
                        );
                        held.push(
                            shared
                                .bytes
                                .clone()
                                .acquire_many_owned(n)
                                .await
                                .expect("never closed"),
                        );
                    }
                    let mut payload = Vec::new();
                    if let Action::Write { length, .. } = action {
                        payload = vec![0u8; length as usize];
                        rd.read_exact(&mut payload).await?;
                    }
                    let device = device.clone();
                    let tx = tx.clone();
                    let contexts = contexts.clone();
                    tokio::spawn(async move {
                        let mut reply =
                            execute(device, request.cookie, action, payload, contexts).await;
                        reply.held = held;
                        let _ = tx.send(reply).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    .await;
    // Replies of requests still running go out before the socket closes.
    drop(tx);
    if !writer.is_finished() {
        let _ = writer.await;
    }
    outcome
}
