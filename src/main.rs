//! The `metatiled` binary: everything happens in [`metatiled::cli::run`], which says
//! how the process exits (0 success, 2 bad usage or configuration, 1 runtime failure).

/// mimalloc rather than glibc's malloc: the hit path allocates and frees small buffers
/// per request, and a render frees tens of megabytes that glibc hands back to the
/// kernel (and faults in again) on every render.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    metatiled::cli::run()
}
