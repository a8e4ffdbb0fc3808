//! The NBD wire format (NetworkBlockDevice/nbd `doc/proto.md`): constants,
//! and pure parsers and encoders for every message the server handles, so
//! hostile input can be fuzzed without a socket.

/// `NBDMAGIC`, first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: newstyle negotiation, and the prefix of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const CLIENT_FLAG_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const CLIENT_FLAG_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;

// Information types (`NBD_REP_INFO`).
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_TRIM: u16 = 1 << 5;
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;

// Commands and command flags.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;

// Structured replies.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

// The `base:allocation` meta context.
pub const BASE_ALLOCATION: &str = "base:allocation";
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;
/// Most meta-context queries one option may carry.
pub const MAX_META_QUERIES: usize = 16;

// Errors (errno values as the protocol fixes them).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// Largest option payload accepted (export names are at most 4096 bytes).
pub const MAX_OPTION_LENGTH: u32 = 64 * 1024;
/// Largest READ/WRITE payload, advertised as the maximum block size.
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;
pub const MIN_BLOCK: u32 = 1;
pub const PREFERRED_BLOCK: u32 = 64 * 1024;

pub const REQUEST_HEADER_LEN: usize = 28;
pub const OPTION_HEADER_LEN: usize = 16;

/// Why a message is refused; every variant ends the connection or earns an
/// NBD error reply, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("bad magic {0:#x}")]
    BadMagic(u64),
    #[error("client flags {0:#x} lack fixed newstyle or carry unknown bits")]
    BadClientFlags(u32),
    #[error("option payload of {0} bytes is too large")]
    OptionTooLarge(u32),
    #[error("malformed option payload")]
    MalformedOption,
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// The server's greeting: magic, `IHAVEOPT`, handshake flags.
pub fn greeting() -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    out[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    out
}

/// What the client's 4 flag bytes allow: `Ok(no_zeroes)`.
pub fn parse_client_flags(b: [u8; 4]) -> Result<bool, ProtoError> {
    let flags = u32::from_be_bytes(b);
    let known = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES;
    if flags & CLIENT_FLAG_FIXED_NEWSTYLE == 0 || flags & !known != 0 {
        return Err(ProtoError::BadClientFlags(flags));
    }
    Ok(flags & CLIENT_FLAG_NO_ZEROES != 0)
}

/// An option header: `(option, payload length)`.
pub fn parse_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<(u32, u32), ProtoError> {
    let magic = be_u64(&b[..8]);
    if magic != IHAVEOPT {
        return Err(ProtoError::BadMagic(magic));
    }
    let option = be_u32(&b[8..12]);
    let length = be_u32(&b[12..16]);
    if length > MAX_OPTION_LENGTH {
        return Err(ProtoError::OptionTooLarge(length));
    }
    Ok((option, length))
}

/// The payload of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub name: String,
    pub requests: Vec<u16>,
}

pub fn parse_info_request(data: &[u8]) -> Result<InfoRequest, ProtoError> {
    if data.len() < 6 {
        return Err(ProtoError::MalformedOption);
    }
    let name_len = be_u32(data) as usize;
    let rest = &data[4..];
    if rest.len() < name_len.saturating_add(2) {
        return Err(ProtoError::MalformedOption);
    }
    let name = std::str::from_utf8(&rest[..name_len])
        .map_err(|_| ProtoError::MalformedOption)?
        .to_string();
    let rest = &rest[name_len..];
    let count = be_u16(rest) as usize;
    let rest = &rest[2..];
    if rest.len() != count * 2 {
        return Err(ProtoError::MalformedOption);
    }
    let requests = rest.chunks_exact(2).map(be_u16).collect();
    Ok(InfoRequest { name, requests })
}

/// The payload of `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`:
/// the export name and the queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest {
    pub name: String,
    pub queries: Vec<String>,
}

pub fn parse_meta_context_request(data: &[u8]) -> Result<MetaContextRequest, ProtoError> {
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| ProtoError::MalformedOption)
    };
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, ProtoError> {
        if rest.len() < n {
            return Err(ProtoError::MalformedOption);
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let mut rest = data;
    let name_len = be_u32(&take(&mut rest, 4)?) as usize;
    let name = text(&take(&mut rest, name_len)?)?;
    let count = be_u32(&take(&mut rest, 4)?) as usize;
    if count > MAX_META_QUERIES {
        return Err(ProtoError::MalformedOption);
    }
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = be_u32(&take(&mut rest, 4)?) as usize;
        queries.push(text(&take(&mut rest, len)?)?);
    }
    if !rest.is_empty() {
        return Err(ProtoError::MalformedOption);
    }
    Ok(MetaContextRequest { name, queries })
}

/// `NBD_REP_META_CONTEXT`'s payload: the context's id and name.
pub fn meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

/// A structured reply chunk's header; `length` bytes of payload follow.
pub fn structured_header(flags: u16, kind: u16, cookie: u64, length: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..20].copy_from_slice(&length.to_be_bytes());
    out
}

/// An export name as `NBD_OPT_EXPORT_NAME` carries it (the whole payload).
pub fn parse_export_name(data: &[u8]) -> Result<String, ProtoError> {
    std::str::from_utf8(data)
        .map(str::to_string)
        .map_err(|_| ProtoError::MalformedOption)
}

pub fn option_reply(option: u32, reply: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// `NBD_INFO_EXPORT`: size and transmission flags.
pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out
}

pub fn info_block_size() -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    out.extend_from_slice(&MIN_BLOCK.to_be_bytes());
    out.extend_from_slice(&PREFERRED_BLOCK.to_be_bytes());
    out.extend_from_slice(&MAX_PAYLOAD.to_be_bytes());
    out
}

pub fn info_name(name: &str) -> Vec<u8> {
    let mut out = INFO_NAME.to_be_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub command: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

pub fn parse_request(b: &[u8; REQUEST_HEADER_LEN]) -> Result<Request, ProtoError> {
    let magic = be_u32(b);
    if magic != REQUEST_MAGIC {
        return Err(ProtoError::BadMagic(magic as u64));
    }
    Ok(Request {
        flags: be_u16(&b[4..6]),
        command: be_u16(&b[6..8]),
        cookie: be_u64(&b[8..16]),
        offset: be_u64(&b[16..24]),
        length: be_u32(&b[24..28]),
    })
}

/// A simple reply header; read data follows it when `error` is 0.
pub fn simple_reply(cookie: u64, error: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// What the server does with a request, decided before any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read {
        offset: u64,
        length: u32,
    },
    Write {
        offset: u64,
        length: u32,
        fua: bool,
    },
    WriteZeroes {
        offset: u64,
        length: u32,
        fua: bool,
    },
    Trim {
        offset: u64,
        length: u32,
        fua: bool,
    },
    Flush,
    /// `NBD_CMD_BLOCK_STATUS` (answered only when a meta context was
    /// negotiated).
    BlockStatus {
        offset: u64,
        length: u32,
        req_one: bool,
    },
    Disconnect,
    /// Answer with this error; `payload` bytes of write data follow the
    /// header and must be consumed first.
    Refuse {
        error: u32,
        payload: u32,
    },
    /// The stream can no longer be trusted (a write payload too large to
    /// skip safely): close the connection.
    Close,
}

/// Validates a request against the export: range, read-only, known command.
pub fn classify(req: &Request, size: u64, read_only: bool) -> Action {
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let in_range = req
        .offset
        .checked_add(req.length as u64)
        .is_some_and(|end| end <= size);
    let payload = if req.command == CMD_WRITE {
        req.length
    } else {
        0
    };
    if req.command == CMD_WRITE && req.length > MAX_PAYLOAD {
        return Action::Close;
    }
    let refuse = |error| Action::Refuse { error, payload };
    match req.command {
        CMD_DISC => Action::Disconnect,
        CMD_FLUSH => Action::Flush,
        CMD_BLOCK_STATUS if req.length == 0 || !in_range => refuse(EINVAL),
        CMD_BLOCK_STATUS => Action::BlockStatus {
            offset: req.offset,
            length: req.length,
            req_one: req.flags & CMD_FLAG_REQ_ONE != 0,
        },
        CMD_READ | CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM => {
            let writes = req.command != CMD_READ;
            if writes && read_only {
                return refuse(EPERM);
            }
            if req.command == CMD_READ && req.length > MAX_PAYLOAD {
                return refuse(EOVERFLOW);
            }
            if !in_range {
                return refuse(if writes { ENOSPC } else { EINVAL });
            }
            let (offset, length) = (req.offset, req.length);
            match req.command {
                CMD_READ => Action::Read { offset, length },
                CMD_WRITE => Action::Write {
                    offset,
                    length,
                    fua,
                },
                CMD_WRITE_ZEROES => Action::WriteZeroes {
                    offset,
                    length,
                    fua,
                },
                _ => Action::Trim {
                    offset,
                    length,
                    fua,
                },
            }
        }
        _ => refuse(EINVAL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&flags.to_be_bytes());
        b[6..8].copy_from_slice(&command.to_be_bytes());
        b[8..16].copy_from_slice(&7u64.to_be_bytes());
        b[16..24].copy_from_slice(&offset.to_be_bytes());
        b[24..28].copy_from_slice(&length.to_be_bytes());
        b
    }

    #[test]
    fn meta_context_requests_parse_and_refuse_garbage() {
        let mut b = vec![];
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(b"vol");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&15u32.to_be_bytes());
        b.extend_from_slice(b"base:allocation");
        assert_eq!(
            parse_meta_context_request(&b).unwrap(),
            MetaContextRequest {
                name: "vol".into(),
                queries: vec!["base:allocation".into()]
            }
        );
        assert!(parse_meta_context_request(&b[..b.len() - 1]).is_err());
        let mut many = vec![0, 0, 0, 0];
        many.extend_from_slice(&1000u32.to_be_bytes());
        assert!(parse_meta_context_request(&many).is_err());
        assert!(parse_meta_context_request(&[0, 0, 0, 9]).is_err());
    }

    #[test]
    fn requests_are_checked_against_the_export() {
        let size = 1 << 20;
        let read = parse_request(&header(CMD_READ, 0, 0, 4096)).unwrap();
        assert_eq!(
            classify(&read, size, false),
            Action::Read {
                offset: 0,
                length: 4096
            }
        );
        let past_end = parse_request(&header(CMD_READ, 0, size - 1, 2)).unwrap();
        assert_eq!(
            classify(&past_end, size, false),
            Action::Refuse {
                error: EINVAL,
                payload: 0
            }
        );
        let wraps = parse_request(&header(CMD_READ, 0, u64::MAX, 2)).unwrap();
        assert_eq!(
            classify(&wraps, size, false),
            Action::Refuse {
                error: EINVAL,
                payload: 0
            }
        );
        let ro_write = parse_request(&header(CMD_WRITE, CMD_FLAG_FUA, 0, 512)).unwrap();
        assert_eq!(
            classify(&ro_write, size, true),
            Action::Refuse {
                error: EPERM,
                payload: 512
            }
        );
        let huge_write = parse_request(&header(CMD_WRITE, 0, 0, MAX_PAYLOAD + 1)).unwrap();
        assert_eq!(classify(&huge_write, u64::MAX, false), Action::Close);
        let unknown = parse_request(&header(99, 0, 0, 0)).unwrap();
        assert_eq!(
            classify(&unknown, size, false),
            Action::Refuse {
                error: EINVAL,
                payload: 0
            }
        );
        let mut bad = header(CMD_READ, 0, 0, 1);
        bad[0] = 0;
        assert!(matches!(parse_request(&bad), Err(ProtoError::BadMagic(_))));
    }

    #[test]
    fn info_requests_must_be_exactly_framed() {
        let mut ok = 3u32.to_be_bytes().to_vec();
        ok.extend_from_slice(b"abc");
        ok.extend_from_slice(&1u16.to_be_bytes());
        ok.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            parse_info_request(&ok).unwrap(),
            InfoRequest {
                name: "abc".into(),
                requests: vec![INFO_BLOCK_SIZE]
            }
        );
        let mut long_name = u32::MAX.to_be_bytes().to_vec();
        long_name.extend_from_slice(b"ab\0\0");
        assert!(parse_info_request(&long_name).is_err());
        assert!(parse_info_request(&ok[..ok.len() - 1]).is_err());
        assert!(parse_info_request(&[]).is_err());
    }

    #[test]
    fn client_flags_need_fixed_newstyle() {
        assert_eq!(parse_client_flags([0, 0, 0, 3]), Ok(true));
        assert_eq!(parse_client_flags([0, 0, 0, 1]), Ok(false));
        assert!(parse_client_flags([0, 0, 0, 0]).is_err());
        assert!(parse_client_flags([0, 0, 1, 1]).is_err());
    }
}
