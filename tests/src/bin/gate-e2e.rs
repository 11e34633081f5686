//! The `gate` CLI, built inside the test crate for the end-to-end tests.

fn main() -> std::process::ExitCode {
    gate_cli::main_with(&[])
}
