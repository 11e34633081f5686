//! Finding the command shell's marker lines in an output stream.
//!
//! The shell (see [`crate::shell`]) writes lines of the form `\x1fGATE-<nonce> <mark>\n`
//! into its stdout and stderr, between and around the commands' own output. The nonce is
//! random per shell and never shown to the commands, so no output of theirs can pass for a
//! mark. A mark may start mid-line (after output without a trailing newline); the bytes
//! around it are passed on unchanged, so a partial line is joined with what follows.

/// One piece of a stream: output bytes, or the text of a mark (after the prefix, without
/// the newline).
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes of output, passed on as they are.
    Data(Vec<u8>),
    /// A mark's text, e.g. `END 7 0`.
    Mark(String),
}

/// Splits one stream into [`Piece`]s. Bytes that may be the start of a mark are held back
/// until the mark is complete (or shown not to be one).
pub struct Scanner {
    prefix: Vec<u8>,
    pending: Vec<u8>,
}

impl Scanner {
    /// A scanner for marks starting with `prefix`.
    pub fn new(prefix: &[u8]) -> Self {
        Self {
            prefix: prefix.to_vec(),
            pending: Vec::new(),
        }
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Drops everything pending (output of a shell that is no longer used).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The next complete piece, if any. What is not taken stays for the next call.
    pub fn next_piece(&mut self) -> Option<Piece> {
        if self.pending.is_empty() {
            return None;
        }
        match find(&self.pending, &self.prefix) {
            Some(0) => {
                let rest = &self.pending[self.prefix.len()..];
                let end = rest.iter().position(|&b| b == b'\n')?;
                let mark = String::from_utf8_lossy(&rest[..end]).into_owned();
                self.pending.drain(..self.prefix.len() + end + 1);
                Some(Piece::Mark(mark))
            }
            Some(at) => Some(Piece::Data(self.pending.drain(..at).collect())),
            None => {
                // Hold back a tail that could be the start of the prefix.
                let keep = (1..self.prefix.len().min(self.pending.len() + 1))
                    .rev()
                    .find(|&k| self.pending.ends_with(&self.prefix[..k]))
                    .unwrap_or(0);
                let take = self.pending.len() - keep;
                (take > 0).then(|| Piece::Data(self.pending.drain(..take).collect()))
            }
        }
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(at) = hay[from..].iter().position(|&b| b == first) {
        let at = from + at;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        if hay.len() - at < needle.len() {
            return None;
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &[u8] = b"\x1fGATE-0123 ";

    /// Feeds `input` in chunks of `size` and collects data and marks.
    fn scan(input: &[u8], size: usize) -> (Vec<u8>, Vec<String>) {
        let mut scanner = Scanner::new(PREFIX);
        let (mut data, mut marks) = (Vec::new(), Vec::new());
        for chunk in input.chunks(size) {
            scanner.feed(chunk);
            while let Some(piece) = scanner.next_piece() {
                match piece {
                    Piece::Data(d) => data.extend(d),
                    Piece::Mark(m) => marks.push(m),
                }
            }
        }
        (data, marks)
    }

    #[test]
    fn marks_are_found_anywhere_whatever_the_chunks() {
        let input = b"out\npartial\x1fGATE-0123 PGID 1 42\nrest\n\x1fGATE-0123 END 1 0\n";
        for size in 1..input.len() {
            let (data, marks) = scan(input, size);
            assert_eq!(data, b"out\npartialrest\n", "chunks of {size}");
            assert_eq!(marks, ["PGID 1 42", "END 1 0"], "chunks of {size}");
        }
    }

    #[test]
    fn lookalikes_without_the_nonce_are_output() {
        let input = b"\x1fGATE-9999 END 1 0\n\x1fGATE_END 0\n\x1f\x1fGATE-012 x\n\x1f";
        for size in 1..input.len() {
            let (data, marks) = scan(input, size);
            assert!(marks.is_empty(), "chunks of {size}: {marks:?}");
            // The lone trailing \x1f may still start a mark: held back.
            assert_eq!(data, &input[..input.len() - 1], "chunks of {size}");
        }
    }

    #[test]
    fn a_mark_waits_for_its_newline_and_what_follows_stays_pending() {
        let mut scanner = Scanner::new(PREFIX);
        scanner.feed(b"\x1fGATE-0123 END 3");
        assert_eq!(scanner.next_piece(), None);
        scanner.feed(b" 5\nnext command's");
        assert_eq!(scanner.next_piece(), Some(Piece::Mark("END 3 5".into())));
        assert_eq!(
            scanner.next_piece(),
            Some(Piece::Data(b"next command's".to_vec()))
        );
        assert_eq!(scanner.next_piece(), None);
    }
}
