//! SPDY/3.1 frames on the wire (the SPDY/3.1 draft, section 2.2 and 2.6): what an API server
//! sends a kubelet after `Upgrade: SPDY/3.1`. A [`Codec`] reads and writes them for one
//! connection; it holds the two zlib contexts the header blocks of a connection share (one per
//! direction, primed with the draft's dictionary).

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

/// The SPDY/3 header compression dictionary (the draft's section 2.6.10.1): length-prefixed
/// header names and methods, then common value fragments. Its Adler-32 is `0xe3c6a7c2`.
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
            "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for word in WORDS {
            d.put_u32(word.len() as u32);
            d.put_slice(word.as_bytes());
        }
        d.put_slice(TAIL.as_bytes());
        d
    });
    &DICTIONARY
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
mod tests {
    use super::*;

    fn hex(s: &str) -> BytesMut {
        let bytes: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect();
        BytesMut::from(&bytes[..])
    }

    fn decode_all(codec: &mut Codec, mut buf: BytesMut) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = codec.decode_frame(&mut buf).expect("decodes") {
            frames.push(f);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        frames
    }

    /// Frames written by spdystream's framer (the Go implementation every API server and
    /// kubectl use), one connection's worth: the header blocks share one zlib context.
    const GO_FRAMES: &[&str] = &[
        "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff",
        "80030001010000290000000300000000000002651c0c29b6e292947c7019cd5ea19b5b9a5392092e48199200000000ffff",
        "800300020000000e000000016260606000000000ffff",
        "000000030100000568656c6c6f",
        "800300060000000400000007",
        "80030007000000080000000300000000",
        "80030003000000080000000500000003",
        "800300090000000800000003000003e8",
        "800300040000000c000000010000000700008000",
    ];

    #[test]
    fn the_dictionary_is_the_drafts() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // The Adler-32 every SPDY/3 header stream names in its zlib header (DICTID).
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in d {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn frames_from_spdystream_decode() {
        let mut codec = Codec::default();
        let frames = decode_all(&mut codec, hex(&GO_FRAMES.concat()));
        let syn = |stream_id, flags, headers: &[(&str, &str)]| Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            flags,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        };
        assert_eq!(frames[0], syn(1, 0, &[("streamtype", "error")]));
        let Frame::SynStream { headers, flags: FLAG_FIN, stream_id: 3, .. } = &frames[1] else { panic!("{:?}", frames[1]) };
        assert_eq!(header(headers, "streamtype"), Some("stdout"));
        assert_eq!(headers.iter().find(|(n, _)| n == "x-multi").map(|(_, v)| v.as_str()), Some("a\0b"));
        assert_eq!(frames[2], Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] });
        assert_eq!(frames[3], Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::from_static(b"hello") });
        assert_eq!(frames[4], Frame::Ping { id: 7 });
        assert_eq!(frames[5], Frame::GoAway { last_good_stream_id: 3, status: 0 });
        assert_eq!(frames[6], Frame::RstStream { stream_id: 5, status: REFUSED_STREAM });
        assert_eq!(frames[7], Frame::WindowUpdate { stream_id: 3, delta: 1000 });
        assert_eq!(frames[8], Frame::Settings { entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 32768)] });
    }

    #[test]
    fn a_frame_split_anywhere_waits_for_the_rest() {
        let whole = hex(&GO_FRAMES.concat());
        for cut in 1..whole.len() {
            let mut codec = Codec::default();
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut frames = Vec::new();
            while let Some(f) = codec.decode_frame(&mut buf).expect("decodes") {
                frames.push(f);
            }
            buf.extend_from_slice(&whole[cut..]);
            frames.extend(decode_all(&mut codec, buf));
            assert_eq!(frames.len(), GO_FRAMES.len(), "cut at {cut}");
        }
    }

    #[test]
    fn what_we_write_spdystream_would_read_back() {
        // Our own writer against our reader, with the shared contexts of one connection each
        // way; byte-exact against spdystream for the frames without header blocks.
        let (mut writer, mut reader) = (Codec::default(), Codec::default());
        let frames = vec![
            Frame::SynReply { stream_id: 1, flags: 0, headers: vec![] },
            Frame::SynStream { stream_id: 2, associated_to: 0, priority: 0, flags: 0, headers: vec![("streamtype".into(), "data".into())] },
            Frame::Headers { stream_id: 2, flags: FLAG_FIN, headers: vec![("port".into(), "8080".into())] },
            Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
            Frame::RstStream { stream_id: 5, status: REFUSED_STREAM },
            Frame::WindowUpdate { stream_id: 3, delta: 1000 },
            Frame::Settings { entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 32768)] },
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            writer.encode_frame(f, &mut buf);
        }
        // The zlib header names the dictionary by its Adler-32.
        assert_eq!(buf[12..18], [0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2]);
        let mut no_headers = BytesMut::new();
        for f in &frames[3..] {
            writer.encode_frame(f, &mut no_headers);
        }
        assert_eq!(no_headers, hex(&GO_FRAMES[3..].concat()));
        assert_eq!(decode_all(&mut reader, buf), frames);
    }

    #[test]
    fn garbage_is_an_error_or_a_wait_never_a_panic() {
        use rand::{Rng, SeedableRng};
        let valid = hex(&GO_FRAMES.concat());
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5bd1);
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 { valid.to_vec() } else { (0..rng.random_range(0..200)).map(|_| rng.random()).collect() };
            for _ in 0..rng.random_range(1..8) {
                if !bytes.is_empty() {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            let mut codec = Codec::default();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode_frame(&mut buf) {}
        }
    }

    #[test]
    fn limits_hold() {
        let mut codec = Codec::default();
        let mut huge = BytesMut::from(&[0x80, 0x03, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff][..]);
        assert_eq!(codec.decode_frame(&mut huge), Err(FrameError::TooLarge(0xff_ffff)));
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00][..]);
        assert_eq!(codec.decode_frame(&mut v2), Err(FrameError::Version(2)));
        // A header block that inflates past the limit (a zlib bomb) is refused.
        let mut bomb_writer = Codec::default();
        let big = vec![("x".to_string(), "a".repeat(MAX_HEADER_BYTES))];
        let mut buf = BytesMut::new();
        bomb_writer.encode_frame(&Frame::SynReply { stream_id: 1, flags: 0, headers: big }, &mut buf);
        assert!(buf.len() < 2048, "compresses well: {}", buf.len());
        assert!(matches!(codec.decode_frame(&mut buf), Err(FrameError::Headers(_))));
    }
}
