//! Reading subunit v2 packets from a byte stream.
//!
//! A packet is: the signature `0xB3`; 16 bits of flags (version 2 in the top nibble, which
//! optional fields follow, the test status in the low 3 bits); the whole packet's length as a
//! variable-length number; then, as flagged, a timestamp, the test id, tags, a MIME type,
//! file content and a routing code; and a CRC32 of everything before it.

use std::io::{self, Read};

/// The first byte of every packet.
pub const SIGNATURE: u8 = 0xB3;
const FLAG_TEST_ID: u16 = 0x0800;
const FLAG_ROUTE_CODE: u16 = 0x0400;
const FLAG_TIMESTAMP: u16 = 0x0200;
const FLAG_TAGS: u16 = 0x0080;
const FLAG_FILE_CONTENT: u16 = 0x0040;
const FLAG_MIME_TYPE: u16 = 0x0020;
const FLAG_EOF: u16 = 0x0010;
/// The largest packet (the length is at most a 3-byte number).
const MAX_PACKET: usize = 0x3F_FFFF;

/// A test status carried by a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No status (an attachment or tags only).
    Undefined,
    /// The test exists (enumeration).
    Exists,
    /// The test started.
    InProgress,
    /// It passed.
    Success,
    /// It passed but was expected to fail.
    UxSuccess,
    /// It was skipped.
    Skip,
    /// It failed.
    Fail,
    /// It failed as expected.
    XFail,
}

impl Status {
    fn from_bits(bits: u16) -> Self {
        match bits & 0x7 {
            1 => Status::Exists,
            2 => Status::InProgress,
            3 => Status::Success,
            4 => Status::UxSuccess,
            5 => Status::Skip,
            6 => Status::Fail,
            7 => Status::XFail,
            _ => Status::Undefined,
        }
    }

    /// Whether this status ends a test.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Success | Status::UxSuccess | Status::Skip | Status::Fail | Status::XFail
        )
    }
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packet {
    /// The test it is about.
    pub test_id: Option<String>,
    /// Its status.
    pub status: Option<Status>,
    /// Seconds and nanoseconds since the Unix epoch.
    pub timestamp: Option<(u32, u32)>,
    /// Tags.
    pub tags: Vec<String>,
    /// A file attachment: its name and bytes.
    pub file: Option<(String, Vec<u8>)>,
    /// The attachment's MIME type.
    pub mime_type: Option<String>,
    /// Whether this is the last packet of the file attachment.
    pub eof: bool,
}

/// Something wrong in the stream, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The byte offset of the packet.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// What the reader found next.
#[derive(Debug)]
pub enum Item {
    /// A valid packet.
    Packet(Packet),
    /// A corrupt packet, skipped.
    Corrupt(Problem),
    /// The stream ended inside a packet.
    Truncated(Problem),
}

/// Reads packets one at a time; memory is bounded by the largest packet.
#[derive(Debug)]
pub struct Reader<R: Read> {
    input: R,
    offset: u64,
    /// A byte read ahead while resynchronizing.
    peeked: Option<u8>,
    /// The current packet's bytes (reused: one allocation for the whole stream).
    packet: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// A reader over `input` (buffer it: the reader reads small pieces).
    pub fn new(input: R) -> Self {
        Self {
            input,
            offset: 0,
            peeked: None,
            packet: Vec::new(),
        }
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        if let Some(b) = self.peeked.take() {
            self.offset += 1;
            return Ok(Some(b));
        }
        let mut one = [0u8; 1];
        loop {
            match self.input.read(&mut one) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.offset += 1;
                    return Ok(Some(one[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads into `buf` as far as the stream allows; returns how much was read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }

    /// The next item, or `None` at the end of the stream. Bytes between packets that are not
    /// subunit (stray output) are skipped.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        // Find the next signature.
        let start = loop {
            match self.byte()? {
                None => return Ok(None),
                Some(SIGNATURE) => break self.offset - 1,
                Some(_) => continue,
            }
        };
        // The signature, two bytes of flags and a length of up to three bytes.
        let mut header = [0u8; 6];
        header[0] = SIGNATURE;
        let got = self.fill(&mut header[1..3])?;
        if got < 2 {
            return Ok(Some(Item::Truncated(Problem {
                offset: start,
                reason: "the stream ends inside a packet header".into(),
            })));
        }
        let first = match self.byte()? {
            Some(b) => b,
            None => {
                return Ok(Some(Item::Truncated(Problem {
                    offset: start,
                    reason: "the stream ends inside a packet header".into(),
                })));
            }
        };
        let extra = match first & 0xC0 {
            0x00 => 0,
            0x40 => 1,
            0x80 => 2,
            _ => {
                return Ok(Some(
                    self.corrupt(start, "the packet length uses 4 bytes (3 at most)"),
                ));
            }
        };
        header[3] = first;
        let got = self.fill(&mut header[4..4 + extra])?;
        if got < extra {
            return Ok(Some(Item::Truncated(Problem {
                offset: start,
                reason: "the stream ends inside a packet header".into(),
            })));
        }
        let length = varint_value(&header[3..4 + extra]) as usize;
        let head = 4 + extra;
        if length < head + 4 || length > MAX_PACKET {
            return Ok(Some(
                self.corrupt(start, &format!("impossible packet length {length}")),
            ));
        }
        let mut packet = std::mem::take(&mut self.packet);
        packet.clear();
        packet.resize(length, 0);
        packet[..head].copy_from_slice(&header[..head]);
        let got = self.fill(&mut packet[head..]);
        let item = got.map(|got| Self::check(start, length, head, got, &packet));
        self.packet = packet;
        item.map(Some)
    }

    /// Checks and decodes a packet of `length` bytes of which `head + got` arrived.
    fn check(start: u64, length: usize, head: usize, got: usize, packet: &[u8]) -> Item {
        if got < length - head {
            return Item::Truncated(Problem {
                offset: start,
                reason: format!(
                    "the stream ends inside a packet ({} of {length} bytes)",
                    head + got
                ),
            });
        }
        let stored = u32::from_be_bytes([
            packet[length - 4],
            packet[length - 3],
            packet[length - 2],
            packet[length - 1],
        ]);
        let computed = crc32fast::hash(&packet[..length - 4]);
        if stored != computed {
            return Item::Corrupt(Problem {
                offset: start,
                reason: format!("bad checksum: computed 0x{computed:08x}, stored 0x{stored:08x}"),
            });
        }
        let flags = u16::from_be_bytes([packet[1], packet[2]]);
        if flags >> 12 != 2 {
            return Item::Corrupt(Problem {
                offset: start,
                reason: format!("unsupported version {}", flags >> 12),
            });
        }
        match decode_body(flags, &packet[head..length - 4]) {
            Ok(decoded) => Item::Packet(decoded),
            Err(reason) => Item::Corrupt(Problem {
                offset: start,
                reason,
            }),
        }
    }

    /// A corrupt header: report it; scanning resumes after the signature byte.
    fn corrupt(&mut self, offset: u64, reason: &str) -> Item {
        Item::Corrupt(Problem {
            offset,
            reason: reason.to_owned(),
        })
    }
}

/// The value of a variable-length number (the top two bits of the first byte say how many
/// bytes follow).
fn varint_value(bytes: &[u8]) -> u32 {
    bytes.iter().enumerate().fold(0u32, |acc, (i, &b)| {
        let b = if i == 0 { b & 0x3F } else { b };
        (acc << 8) | u32::from(b)
    })
}

/// A cursor over a packet body.
struct Body<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Body<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        match end {
            Some(end) => {
                let slice = &self.data[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(format!("{what} extends past the end of the packet")),
        }
    }

    fn number(&mut self, what: &str) -> Result<u32, String> {
        let first = *self.take(1, what)?.first().unwrap_or(&0);
        let extra = usize::from(first >> 6);
        let rest = self.take(extra, what)?;
        Ok(rest
            .iter()
            .fold(u32::from(first & 0x3F), |acc, &b| (acc << 8) | u32::from(b)))
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let len = self.number(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

fn decode_body(flags: u16, data: &[u8]) -> Result<Packet, String> {
    let mut body = Body { data, pos: 0 };
    let mut packet = Packet {
        status: Some(Status::from_bits(flags)),
        eof: flags & FLAG_EOF != 0,
        ..Packet::default()
    };
    if flags & FLAG_TIMESTAMP != 0 {
        let secs = body.take(4, "the timestamp")?;
        let secs = u32::from_be_bytes([secs[0], secs[1], secs[2], secs[3]]);
        let nanos = body.number("the timestamp")?;
        packet.timestamp = Some((secs, nanos));
    }
    if flags & FLAG_TEST_ID != 0 {
        packet.test_id = Some(body.text("the test id")?);
    }
    if flags & FLAG_TAGS != 0 {
        let count = body.number("the tags")?;
        for _ in 0..count {
            packet.tags.push(body.text("a tag")?);
        }
    }
    if flags & FLAG_MIME_TYPE != 0 {
        packet.mime_type = Some(body.text("the MIME type")?);
    }
    if flags & FLAG_FILE_CONTENT != 0 {
        let name = body.text("the file name")?;
        let len = body.number("the file content")? as usize;
        let bytes = body.take(len, "the file content")?.to_vec();
        packet.file = Some((name, bytes));
    }
    if flags & FLAG_ROUTE_CODE != 0 {
        body.text("the routing code")?;
    }
    Ok(packet)
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
