//! Onmic Studio's executable: everything lives in the library.
// No console window on Windows release builds.
#![cfg_attr(
    all(not(debug_assertions), target_os = "windows"),
    windows_subsystem = "windows"
)]

fn main() -> std::process::ExitCode {
    use onmic_studio::render_mode;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let user_set = |key: &str| std::env::var_os(key).is_some();
    for (key, value) in render_mode::webview_env(render_mode::detect(), cpus, user_set) {
        // SAFETY: the first statement of `main`: no other thread exists yet that could read the
        // environment while it changes. The web view's process, started later, inherits it.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(key, value);
        }
    }
    // WebKit feature switches, set on the web view before its first page (Linux).
    #[cfg(target_os = "linux")]
    {
        use onmic_studio::webkit_features;
        let mut switches = render_mode::webkit_switches(render_mode::detect());
        if let Ok(text) = std::env::var(webkit_features::FEATURES_VAR) {
            match webkit_features::parse_switches(&text) {
                Ok(s) => switches.extend(s),
                Err(e) => eprintln!(
                    "onmic-studio: {} is not used: {e}; write it as Name=1,Other=0",
                    webkit_features::FEATURES_VAR
                ),
            }
        }
        webkit_features::set_before_first_page(switches);
    }
    onmic_studio::main()
}
