//! Jenkins' own kinds of answer, on the harness's HTTP plumbing ([`crate::wire`]).

pub(super) use crate::wire::{Answer, Request};

/// The version Jenkins names in its `X-Jenkins` header.
const VERSION: &str = "2.479.3";

/// An HTML error page, as Jenkins writes them.
pub(super) fn page(status: u16, text: &str) -> Answer {
    Answer::typed(
        status,
        "text/html;charset=utf-8",
        format!("<html><body><h1>Error {status}</h1><p>{text}</p></body></html>\n"),
    )
}

/// A `302` to `location` (Jenkins' answer to a form post).
pub(super) fn redirect(location: &str) -> Answer {
    Answer::empty(302).with("Location", location)
}

/// Writes `answer` with the headers every Jenkins answer carries.
pub(super) fn send(answer: Answer, stream: &std::net::TcpStream) {
    let _ = answer.with("X-Jenkins", VERSION).write(stream, false);
}
