//! `wordmask`, the native command-line tool.

mod cli;

fn main() -> std::process::ExitCode {
    // `--backend auto` probes for a GPU through wgpu; Mesa's Vulkan driver then asks libwayland
    // for a display, and without XDG_RUNTIME_DIR libwayland prints "error: XDG_RUNTIME_DIR is
    // invalid or not set in the environment." — which reads as a failure of ours. Any absolute
    // path keeps it quiet (there is no display to find either way).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: the first statement of `main`, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    cli::run()
}
