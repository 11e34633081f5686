//! Unit tests of the packet reader: a packet python-subunit wrote, round trips through an
//! encoder written like python-subunit's, and every way a packet can be wrong.

use super::*;

/// A packet python-subunit 1.4.6 wrote: `StreamResultToBytes.status(test_id="a.B.test_x",
/// test_status="fail", test_tags={"smoke"}, file_name="traceback", file_bytes=b"boom",
/// mime_type="text/plain", eof=True, route_code="0", timestamp=2024-01-02T03:04:05.678901Z)`.
const PYTHON_PACKET: [u8; 62] = [
    0xb3, 0x2f, 0xf6, 0x3e, 0x65, 0x93, 0x7d, 0x25, 0xe8, 0x77, 0x35, 0x08, 0x0a, 0x61, 0x2e, 0x42,
    0x2e, 0x74, 0x65, 0x73, 0x74, 0x5f, 0x78, 0x01, 0x05, 0x73, 0x6d, 0x6f, 0x6b, 0x65, 0x0a, 0x74,
    0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69, 0x6e, 0x09, 0x74, 0x72, 0x61, 0x63, 0x65, 0x62,
    0x61, 0x63, 0x6b, 0x04, 0x62, 0x6f, 0x6f, 0x6d, 0x01, 0x30, 0xf8, 0xe1, 0x88, 0xca,
];

fn python_packet() -> Packet {
    Packet {
        test_id: Some("a.B.test_x".into()),
        status: Some(Status::Fail),
        timestamp: Some((1_704_164_645, 678_901_000)),
        tags: vec!["smoke".into()],
        file: Some(("traceback".into(), b"boom".to_vec())),
        mime_type: Some("text/plain".into()),
        eof: true,
    }
}

/// A variable-length number, in the shortest form.
fn number(n: u32) -> Vec<u8> {
    match n {
        0..0x40 => vec![n as u8],
        0x40..0x4000 => (n as u16 | 0x4000).to_be_bytes().to_vec(),
        0x4000..0x40_0000 => (n | 0x80_0000).to_be_bytes()[1..].to_vec(),
        _ => (n | 0xC000_0000).to_be_bytes().to_vec(),
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    out.extend(number(s.len() as u32));
    out.extend_from_slice(s.as_bytes());
}

fn status_bits(status: Option<Status>) -> u16 {
    match status.unwrap_or(Status::Undefined) {
        Status::Undefined => 0,
        Status::Exists => 1,
        Status::InProgress => 2,
        Status::Success => 3,
        Status::UxSuccess => 4,
        Status::Skip => 5,
        Status::Fail => 6,
        Status::XFail => 7,
    }
}

/// `packet` encoded as python-subunit's `StreamResultToBytes` encodes it: the packet
/// length in the shortest form that holds the whole packet (a 4-byte one when it is too
/// long for 3, which the reader refuses).
fn encode(packet: &Packet, route_code: Option<&str>) -> Vec<u8> {
    // Version 2, and `runnable` (0x0100), which python-subunit sets by default and the
    // reader has no use for.
    let mut flags = 0x2000 | 0x0100 | status_bits(packet.status);
    let mut body = Vec::new();
    if let Some((secs, nanos)) = packet.timestamp {
        flags |= FLAG_TIMESTAMP;
        body.extend(secs.to_be_bytes());
        body.extend(number(nanos));
    }
    if let Some(id) = &packet.test_id {
        flags |= FLAG_TEST_ID;
        text(&mut body, id);
    }
    if !packet.tags.is_empty() {
        flags |= FLAG_TAGS;
        body.extend(number(packet.tags.len() as u32));
        for tag in &packet.tags {
            text(&mut body, tag);
        }
    }
    if let Some(mime) = &packet.mime_type {
        flags |= FLAG_MIME_TYPE;
        text(&mut body, mime);
    }
    if let Some((name, bytes)) = &packet.file {
        flags |= FLAG_FILE_CONTENT;
        text(&mut body, name);
        body.extend(number(bytes.len() as u32));
        body.extend_from_slice(bytes);
    }
    if let Some(route) = route_code {
        flags |= FLAG_ROUTE_CODE;
        text(&mut body, route);
    }
    if packet.eof {
        flags |= FLAG_EOF;
    }
    let base = 1 + 2 + body.len() + 4;
    let length = if base + 1 < 0x40 {
        base + 1
    } else if base + 2 < 0x4000 {
        base + 2
    } else if base + 3 < 0x40_0000 {
        base + 3
    } else {
        base + 4
    };
    let mut out = vec![SIGNATURE];
    out.extend(flags.to_be_bytes());
    out.extend(number(length as u32));
    assert_eq!(out.len() + body.len() + 4, length, "the length form chosen");
    out.extend(body);
    let crc = crc32fast::hash(&out);
    out.extend(crc.to_be_bytes());
    out
}

/// Every item of `bytes`, to the end of the stream.
fn items(bytes: &[u8]) -> Vec<Item> {
    let mut reader = Reader::new(bytes);
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        items.push(item);
    }
    items
}

fn only_packet(bytes: &[u8]) -> Packet {
    match items(bytes).as_slice() {
        [Item::Packet(p)] => p.clone(),
        other => panic!("one packet expected: {other:?}"),
    }
}

/// A packet whose file content makes it exactly `length` bytes long (at least 16). The
/// shortest length form leaves some lengths impossible: 64 (62 bytes plus a 1-byte
/// length are 63, plus a 2-byte one 64 — but 63 fits one byte), 0x4000 and 0x40_0000.
fn packet_of_length(length: usize) -> Packet {
    let mut packet = Packet {
        status: Some(Status::Undefined),
        file: Some(("f".into(), Vec::new())),
        ..Packet::default()
    };
    let mut content = length.saturating_sub(16);
    for _ in 0..4 {
        packet.file = Some(("f".into(), vec![0; content]));
        let got = encode(&packet, None).len();
        if got == length {
            return packet;
        }
        content = (content + length).checked_sub(got).unwrap();
    }
    panic!("no packet is {length} bytes long in the shortest length form");
}

#[test]
fn a_packet_python_subunit_wrote_decodes_field_by_field() {
    assert_eq!(only_packet(&PYTHON_PACKET), python_packet());
    // The test encoder writes the same bytes, so the round trips below are anchored to
    // python-subunit's format and not only to this reader.
    assert_eq!(encode(&python_packet(), Some("0")), PYTHON_PACKET);
}

#[test]
fn packets_round_trip_through_every_length_form_and_status() {
    let statuses = [
        Status::Undefined,
        Status::Exists,
        Status::InProgress,
        Status::Success,
        Status::UxSuccess,
        Status::Skip,
        Status::Fail,
        Status::XFail,
    ];
    for status in statuses {
        let packet = Packet {
            status: Some(status),
            test_id: Some("t".into()),
            ..Packet::default()
        };
        assert_eq!(only_packet(&encode(&packet, None)), packet, "{status:?}");
    }
    // The smallest packet: no fields, 8 bytes.
    let empty = Packet {
        status: Some(Status::Undefined),
        ..Packet::default()
    };
    assert_eq!(encode(&empty, None).len(), 8);
    assert_eq!(only_packet(&encode(&empty, None)), empty);
    // Each side of each length form's limit, and the largest packet there is.
    for length in [63, 65, 0x3FFF, 0x4001, MAX_PACKET] {
        let packet = packet_of_length(length);
        let bytes = encode(&packet, None);
        assert_eq!(bytes.len(), length);
        let form = match length {
            0..0x40 => 0x00,
            0x40..0x4000 => 0x40,
            _ => 0x80,
        };
        assert_eq!(bytes[3] & 0xC0, form, "length {length}");
        assert_eq!(only_packet(&bytes), packet, "length {length}");
    }
    // Timestamps and numbers in every varint form, tags, a route code (read, dropped).
    for nanos in [
        0,
        0x3F,
        0x40,
        0x3FFF,
        0x4000,
        0x3F_FFFF,
        0x40_0000,
        999_999_999,
    ] {
        let packet = Packet {
            status: Some(Status::Success),
            test_id: Some("x".repeat(70)),
            timestamp: Some((u32::MAX, nanos)),
            tags: (0..65).map(|i| format!("tag{i}")).collect(),
            ..Packet::default()
        };
        assert_eq!(
            only_packet(&encode(&packet, Some("worker-1"))),
            packet,
            "{nanos}"
        );
    }
}

#[test]
fn a_bad_checksum_is_reported_at_its_packet_offset_and_reading_goes_on() {
    let first = encode(&python_packet(), None);
    let mut second = PYTHON_PACKET.to_vec();
    second[12] ^= 0x01;
    let computed = crc32fast::hash(&second[..second.len() - 4]);
    let third = encode(&packet_of_length(100), None);
    let stream = [b"stray output\n".as_slice(), &first, &second, &third].concat();
    let offset = (13 + first.len()) as u64;
    match items(&stream).as_slice() {
        [Item::Packet(a), Item::Corrupt(problem), Item::Packet(c)] => {
            assert_eq!(*a, python_packet());
            assert_eq!(problem.offset, offset);
            assert_eq!(
                problem.reason,
                format!("bad checksum: computed 0x{computed:08x}, stored 0xf8e188ca")
            );
            assert_eq!(*c, packet_of_length(100));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_length_over_the_limit_or_too_small_for_a_packet_is_corrupt() {
    let good = encode(&python_packet(), None);
    // The shortest packet past the largest takes a 4-byte length, which subunit v2
    // forbids (MAX_PACKET + 1 bytes cannot be written: see `packet_of_length`).
    let huge = encode(&packet_of_length(MAX_PACKET + 2), None);
    assert_eq!(huge.len(), MAX_PACKET + 2);
    assert_eq!(huge[3] & 0xC0, 0xC0);
    let items = items(&[huge.as_slice(), &good].concat());
    match items.first() {
        Some(Item::Corrupt(p)) => {
            assert_eq!(p.offset, 0);
            assert_eq!(p.reason, "the packet length uses 4 bytes (3 at most)");
        }
        other => panic!("{other:?}"),
    }
    // Scanning resumes after the bad header and finds the good packet at the end.
    match items.last() {
        Some(Item::Packet(p)) => assert_eq!(*p, python_packet()),
        other => panic!("{other:?}"),
    }
    // A length shorter than the header and the CRC.
    for (bytes, length) in [
        (&[SIGNATURE, 0x20, 0x00, 0x07][..], 7),
        (&[SIGNATURE, 0x20, 0x00, 0x40, 0x05][..], 5),
    ] {
        match self::items(&[bytes, &good].concat()).as_slice() {
            [Item::Corrupt(p), Item::Packet(next)] => {
                assert_eq!(p.offset, 0);
                assert_eq!(p.reason, format!("impossible packet length {length}"));
                assert_eq!(*next, python_packet());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_truncated_packet_is_reported_at_its_start_wherever_it_is_cut() {
    let first = encode(&python_packet(), None);
    // A 2-byte length, so cuts fall between its bytes too.
    let second = encode(&packet_of_length(200), None);
    for cut in 1..second.len() {
        let stream = [first.as_slice(), &second[..cut]].concat();
        match items(&stream).as_slice() {
            [Item::Packet(p), Item::Truncated(problem)] => {
                assert_eq!(*p, python_packet());
                assert_eq!(problem.offset, first.len() as u64, "cut at {cut}");
                let inside = if cut < 5 {
                    "the stream ends inside a packet header".to_owned()
                } else {
                    format!("the stream ends inside a packet ({cut} of 200 bytes)")
                };
                assert_eq!(problem.reason, inside, "cut at {cut}");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn a_wrong_version_or_a_field_past_the_end_is_corrupt() {
    let mut v1 = PYTHON_PACKET.to_vec();
    v1[1] = (v1[1] & 0x0F) | 0x10;
    let len = v1.len();
    let crc = crc32fast::hash(&v1[..len - 4]);
    v1[len - 4..].copy_from_slice(&crc.to_be_bytes());
    // A test id that says it is longer than what is left of the packet.
    let mut long_id = PYTHON_PACKET.to_vec();
    long_id[12] = 0x30;
    let crc = crc32fast::hash(&long_id[..len - 4]);
    long_id[len - 4..].copy_from_slice(&crc.to_be_bytes());
    for (bytes, reason) in [
        (v1, "unsupported version 1"),
        (long_id, "the test id extends past the end of the packet"),
    ] {
        match items(&bytes).as_slice() {
            [Item::Corrupt(p)] => {
                assert_eq!((p.offset, p.reason.as_str()), (0, reason));
            }
            other => panic!("{other:?}"),
        }
    }
}
