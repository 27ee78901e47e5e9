//! Onmic Studio's executable: everything lives in the library.
// No console window on Windows release builds.
#![cfg_attr(
    all(not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

fn main() -> std::process::ExitCode {
    use onmic_studio::render_mode;
    let user_set = std::env::var_os(render_mode::CPU_PAINTING_VAR).is_some();
    if let Some((key, value)) = render_mode::webview_env(render_mode::detect(), user_set) {
        // SAFETY: the first statement of `main`: no other thread exists yet that could read the
        // environment while it changes. The web view's process, started later, inherits it.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(key, value);
        }
    }
    onmic_studio::main()
}
