//! The `gate` binary: gate's CLI with the built-in backends.

fn main() -> std::process::ExitCode {
    gate_cli::main_with(&[])
}
