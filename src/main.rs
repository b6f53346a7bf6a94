//! `cmd-chat`: see `cmd-chat --help`, and the library's `cli` module.

fn main() -> std::process::ExitCode {
    cmd_chat::cli::main()
}
