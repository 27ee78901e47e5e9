//! `cargo xtask`: Onmic's set-up and orchestration.
//!
//! - `cargo xtask run [--release] [--screenshot PATH]`: installs what is missing, builds the UI,
//!   starts a local room server and the Studio.
//! - `cargo xtask test`: the same set-up, the daemons tests need (Xvfb, PulseAudio), then fmt,
//!   clippy, every crate's tests, the UI's tests and the end-to-end tests; a summary with phase
//!   times; non-zero exit when anything failed.
//! - `cargo xtask bench`: the benchmarks, with the same daemons.
//! - `cargo xtask with-daemons -- CMD…`: builds the binaries, starts the test daemons and runs one
//!   command with the tests' environment (to run a single test, end-to-end ones included).
//! - `cargo xtask bundle [--debug]`: the Studio's `.deb` and `.rpm` (Tauri CLI from npm).
//! - `cargo xtask ui | bindings | icons | setup`: single steps.

mod bundle;
mod daemons;
mod phases;
mod run;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  run [--release] [--screenshot PATH]
                 set up, build the UI and the Studio, start a local room server and the Studio
                 (--screenshot: save the screen after start-up to PATH and close again)
  test           set up, start test daemons, run fmt, clippy and every test; print a summary
  bench          run the benchmarks (criterion and bench binaries) with the test daemons
  with-daemons -- CMD...
                 build the binaries, start the test daemons (Xvfb, PulseAudio, drivers) and run
                 CMD with the tests' environment, e.g. one end-to-end test:
                 cargo xtask with-daemons -- cargo test -p onmic-e2e --test studio -- NAME
  bundle [--debug] [--smoke]
                 build the Studio's .deb and .rpm into target/{release,debug}/bundle/ with the
                 Tauri CLI from ui/node_modules (--debug: package the dev-profile build the
                 tests use, much faster; default: the optimised release build; --smoke:
                 the suite's package phase: bundle --debug, install the .deb, start it, remove
                 it, under `cargo xtask with-daemons -- cargo xtask bundle --smoke`)
  setup          install missing system and npm packages (Debian, as root) or print how to
  ui             build the UI into ui/dist
  bindings       regenerate ui/src/bindings.ts from the Rust commands and types
  icons          redraw the app icons in icons/ (ImageMagick, png2icns)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "run" => run::run(rest),
        "test" => return test::test(),
        "bench" => test::bench(rest),
        "with-daemons" => return test::with_daemons(rest),
        "setup" => setup::system_packages()
            .and_then(|()| setup::npm_packages())
            .and_then(|()| setup::pip_packages()),
        "ui" => setup::build_ui(),
        "bundle" => bundle::bundle_command(rest),
        "bindings" => run::bindings(),
        "icons" => run::icons(),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
