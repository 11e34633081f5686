//! Digests of local files for S3: the SHA-256 of the manifest and the ETags S3 gives the
//! same bytes, in one read; and the base64 form S3's checksum headers take.

use std::io::Read;
use std::path::Path;

use gate_core::{Error, Result};
use sha2::{Digest, Sha256};

use crate::manifest::hex;

/// A file's size, SHA-256 and the ETags S3 may report for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digests {
    pub size: u64,
    pub sha256: String,
    /// The MD5 of the whole; for a file uploaded in parts, also the MD5 of the parts'
    /// MD5s with the part count.
    pub etags: Vec<String>,
}

/// Reads `path` once for its [`Digests`], with parts of `part_size` when `multipart`.
/// Used for files that already exist in the bucket (to tell unchanged from changed);
/// files on their way up are hashed from the bytes being sent instead.
pub(crate) fn digests(path: &Path, part_size: u64, multipart: bool) -> Result<Digests> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut sha = Sha256::new();
    let mut whole = md5::Context::new();
    let mut part = md5::Context::new();
    let mut part_digests = Vec::new();
    let (mut in_part, mut size) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        size += n as u64;
        sha.update(chunk);
        whole.consume(chunk);
        while !chunk.is_empty() {
            let take = ((part_size - in_part) as usize).min(chunk.len());
            part.consume(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == part_size {
                let done = std::mem::replace(&mut part, md5::Context::new());
                part_digests.extend_from_slice(&done.finalize().0);
                in_part = 0;
            }
        }
    }
    let mut etags = vec![format!("{:x}", whole.finalize())];
    if multipart {
        let mut count = part_digests.len() / 16;
        if in_part > 0 {
            part_digests.extend_from_slice(&part.finalize().0);
            count += 1;
        }
        etags.push(format!("{:x}-{count}", md5::compute(&part_digests)));
    }
    Ok(Digests {
        size,
        sha256: hex(&sha.finalize()),
        etags,
    })
}

/// Standard base64 with padding (the form of `x-amz-checksum-sha256`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_are_the_md5_of_part_md5s_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 11]).unwrap();
        let found = digests(&path, 5, true).unwrap();
        let parts: Vec<u8> = [&[7u8; 5][..], &[7u8; 5][..], &[7u8; 1][..]]
            .iter()
            .flat_map(|p| md5::compute(p).0)
            .collect();
        assert_eq!(found.size, 11);
        assert_eq!(found.etags[0], format!("{:x}", md5::compute([7u8; 11])));
        assert_eq!(found.etags[1], format!("{:x}-3", md5::compute(&parts)));
        assert_eq!(found.sha256, hex(&Sha256::digest([7u8; 11])));
    }

    #[test]
    fn base64_pads_like_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }
}
