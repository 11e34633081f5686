//! `gate` with one more provider: gate's whole CLI plus `unix-users`.

fn main() -> std::process::ExitCode {
    gate_cli::main_with(&[gate_provider_unix_users::register])
}
