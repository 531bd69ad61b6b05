//! The `metatiled` binary: everything happens in [`metatiled::cli::run`], which says
//! how the process exits (0 success, 2 bad usage or configuration, 1 runtime failure).

fn main() -> std::process::ExitCode {
    metatiled::cli::run()
}
