//! Onmic Studio's executable: everything lives in the library.
// No console window on Windows release builds.
#![cfg_attr(
    all(not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

fn main() -> std::process::ExitCode {
    onmic_studio::main()
}
