//! The `labkubelet` command.

mod cli;

labkubelet::process_allocator!();

fn main() -> std::process::ExitCode {
    cli::main()
}
