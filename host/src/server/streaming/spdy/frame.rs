//! SPDY/3.1 frames on the wire (the SPDY/3.1 draft, section 2.2 and 2.6): what an API server
//! sends a kubelet after `Upgrade: SPDY/3.1`. A [`Codec`] reads and writes them for one
//! connection; it holds the two zlib contexts the header blocks of a connection share (one per
//! direction, primed with the draft's dictionary).

use super::dictionary::dictionary;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Data frame flag: the sender's last frame on the stream. Also a control frame flag on
/// SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream was refused before any processing (too many streams).
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: a frame broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: a stream got data beyond its window.
pub const FLOW_CONTROL_ERROR: u32 = 7;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// The largest frame payload read (the 24-bit length field allows 16 MiB); kube clients send
/// 32 KiB data frames.
const MAX_PAYLOAD: usize = 1 << 20;
/// The most a header block may inflate to, and the most pairs it may name.
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_HEADER_PAIRS: u32 = 256;

/// A stream's headers: lower-case names, each with its values (sent NUL-joined).
pub type Headers = Vec<(String, String)>;

/// One frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// `(flags, id, value)` entries.
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

/// Why a connection's bytes are not SPDY/3.1; the connection ends.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("a frame of {0} bytes is larger than the {MAX_PAYLOAD} accepted")]
    TooLarge(usize),
    #[error("frame type {kind} is {len} bytes, too short")]
    Short { kind: u16, len: usize },
    #[error("header block: {0}")]
    Headers(String),
}

/// Reads and writes one connection's frames; `tokio_util`'s `Framed` drives it.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
    /// Whether the deflate context has its dictionary yet (set before its first use).
    deflate_primed: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec { inflate: Decompress::new(true), deflate: Compress::new(Compression::default(), true), deflate_primed: false }
    }
}

impl Codec {
    fn inflate_headers(&mut self, block: &[u8]) -> Result<Headers, FrameError> {
        // One byte over the limit tells a block that is too large from one that fits exactly.
        let mut out = Vec::with_capacity(MAX_HEADER_BYTES + 1);
        let mut input = block;
        loop {
            let before_in = self.inflate.total_in();
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before_in) as usize..];
            if out.len() > MAX_HEADER_BYTES {
                return Err(FrameError::Headers(format!("inflates beyond {MAX_HEADER_BYTES} bytes")));
            }
            match result {
                Ok(Status::StreamEnd) => return Err(FrameError::Headers("the zlib stream ended".into())),
                Ok(_) if input.is_empty() => break,
                Ok(Status::BufError) => return Err(FrameError::Headers("truncated".into())),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(|e| FrameError::Headers(e.to_string()))?;
                }
                Err(e) => return Err(FrameError::Headers(e.to_string())),
            }
        }
        parse_header_block(&out)
    }

    fn deflate_headers(&mut self, headers: &Headers, dst: &mut BytesMut) {
        if !self.deflate_primed {
            // Cannot fail on a fresh zlib context.
            let _ = self.deflate.set_dictionary(dictionary());
            self.deflate_primed = true;
        }
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.to_ascii_lowercase().as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            let before_in = self.deflate.total_in();
            // Compressing into memory only fails on a broken context, which ours never is.
            let _ = self.deflate.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        dst.put_slice(&out);
    }
}

fn parse_header_block(mut b: &[u8]) -> Result<Headers, FrameError> {
    let short = || FrameError::Headers("truncated".into());
    if b.len() < 4 {
        return Err(short());
    }
    let pairs = b.get_u32();
    if pairs > MAX_HEADER_PAIRS {
        return Err(FrameError::Headers(format!("{pairs} pairs, more than {MAX_HEADER_PAIRS}")));
    }
    let string = |b: &mut &[u8]| -> Result<String, FrameError> {
        if b.len() < 4 {
            return Err(short());
        }
        let len = b.get_u32() as usize;
        if b.len() < len {
            return Err(short());
        }
        let s = String::from_utf8_lossy(&b[..len]).into_owned();
        b.advance(len);
        Ok(s)
    };
    let mut headers = Vec::with_capacity(pairs as usize);
    for _ in 0..pairs {
        let name = string(&mut b)?;
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(FrameError::Headers(format!("header name {name:?} is empty or not lower case")));
        }
        headers.push((name, string(&mut b)?));
    }
    Ok(headers)
}

/// The first value of a header (multiple values are NUL-joined).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

impl tokio_util::codec::Decoder for Codec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        self.decode_frame(src).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl Codec {
    /// The next whole frame in `src`, if there is one; unknown control frame types are
    /// skipped, as the draft asks.
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if src.len() < 8 {
                return Ok(None);
            }
            let len = (u32::from_be_bytes([0, src[5], src[6], src[7]])) as usize;
            if len > MAX_PAYLOAD {
                return Err(FrameError::TooLarge(len));
            }
            if src.len() < 8 + len {
                src.reserve(8 + len - src.len());
                return Ok(None);
            }
            let head = src.split_to(8);
            let mut body = src.split_to(len).freeze();
            let flags = head[4];
            if head[0] & 0x80 == 0 {
                let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & STREAM_ID_MASK;
                return Ok(Some(Frame::Data { stream_id, flags, data: body }));
            }
            let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
            if version != 3 {
                return Err(FrameError::Version(version));
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let need = match kind {
                1 => 10,
                2 | 8 => 4,
                3 | 7 | 9 => 8,
                4 | 6 => 4,
                _ => 0,
            };
            if len < need {
                return Err(FrameError::Short { kind, len });
            }
            let frame = match kind {
                1 => {
                    let stream_id = body.get_u32() & STREAM_ID_MASK;
                    let associated_to = body.get_u32() & STREAM_ID_MASK;
                    let priority = body.get_u8() >> 5;
                    body.advance(1);
                    Frame::SynStream { stream_id, associated_to, priority, flags, headers: self.inflate_headers(&body)? }
                }
                2 => {
                    let stream_id = body.get_u32() & STREAM_ID_MASK;
                    Frame::SynReply { stream_id, flags, headers: self.inflate_headers(&body)? }
                }
                3 => Frame::RstStream { stream_id: body.get_u32() & STREAM_ID_MASK, status: body.get_u32() },
                4 => {
                    let count = body.get_u32() as usize;
                    if body.len() < count.saturating_mul(8) {
                        return Err(FrameError::Short { kind, len });
                    }
                    let entries = (0..count)
                        .map(|_| {
                            let word = body.get_u32();
                            ((word >> 24) as u8, word & 0x00ff_ffff, body.get_u32())
                        })
                        .collect();
                    Frame::Settings { entries }
                }
                6 => Frame::Ping { id: body.get_u32() },
                7 => Frame::GoAway { last_good_stream_id: body.get_u32() & STREAM_ID_MASK, status: body.get_u32() },
                8 => {
                    let stream_id = body.get_u32() & STREAM_ID_MASK;
                    Frame::Headers { stream_id, flags, headers: self.inflate_headers(&body)? }
                }
                9 => Frame::WindowUpdate { stream_id: body.get_u32() & STREAM_ID_MASK, delta: body.get_u32() & STREAM_ID_MASK },
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    /// Appends `frame` to `dst`.
    pub fn encode_frame(&mut self, frame: &Frame, dst: &mut BytesMut) {
        let control = |dst: &mut BytesMut, kind: u16, flags: u8| {
            dst.put_u16(0x8003);
            dst.put_u16(kind);
            dst.put_u32(u32::from(flags) << 24);
            dst.len()
        };
        let start = dst.len();
        let body_at = match frame {
            Frame::Data { stream_id, flags, data } => {
                dst.put_u32(stream_id & STREAM_ID_MASK);
                dst.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                dst.put_slice(data);
                return;
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let at = control(dst, 1, *flags);
                dst.put_u32(*stream_id);
                dst.put_u32(*associated_to);
                dst.put_u8(priority << 5);
                dst.put_u8(0);
                self.deflate_headers(headers, dst);
                at
            }
            Frame::SynReply { stream_id, flags, headers } => {
                let at = control(dst, 2, *flags);
                dst.put_u32(*stream_id);
                self.deflate_headers(headers, dst);
                at
            }
            Frame::RstStream { stream_id, status } => {
                let at = control(dst, 3, 0);
                dst.put_u32(*stream_id);
                dst.put_u32(*status);
                at
            }
            Frame::Settings { entries } => {
                let at = control(dst, 4, 0);
                dst.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    dst.put_u32((u32::from(*flags) << 24) | (id & 0x00ff_ffff));
                    dst.put_u32(*value);
                }
                at
            }
            Frame::Ping { id } => {
                let at = control(dst, 6, 0);
                dst.put_u32(*id);
                at
            }
            Frame::GoAway { last_good_stream_id, status } => {
                let at = control(dst, 7, 0);
                dst.put_u32(*last_good_stream_id);
                dst.put_u32(*status);
                at
            }
            Frame::Headers { stream_id, flags, headers } => {
                let at = control(dst, 8, *flags);
                dst.put_u32(*stream_id);
                self.deflate_headers(headers, dst);
                at
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let at = control(dst, 9, 0);
                dst.put_u32(*stream_id);
                dst.put_u32(*delta);
                at
            }
        };
        // The length goes in the low 24 bits after the flags byte.
        let len = (dst.len() - body_at) as u32;
        dst[start + 5..start + 8].copy_from_slice(&len.to_be_bytes()[1..]);
    }
}

impl tokio_util::codec::Encoder<Frame> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.encode_frame(&frame, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
