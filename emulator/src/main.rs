//! `connector-emulator serve …` / `connector-emulator ctl …` (see the library docs).

fn main() -> std::process::ExitCode {
    connector_emulator::cli_main()
}
