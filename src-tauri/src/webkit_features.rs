//! WebKitGTK's feature switches (`webkit_settings_set_feature_enabled`, WebKitGTK ≥ 2.42) for the
//! Studio's web view: what the Studio sets without a GPU, and `ONMIC_WEBKIT_FEATURES` to try
//! others (docs/studio.md, "Event-to-paint benchmark", "Fifth round").
//!
//! The `webkit2gtk` crate the Studio links through Tauri binds WebKitGTK 2.40's API, which has no
//! feature list; the five C functions used here are declared by hand.

/// A feature switch: WebKit's identifier and whether it is to be on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSwitch {
    /// WebKit's identifier (`webkit_feature_get_identifier`), e.g. `UnifyDamagedRegions`.
    pub name: String,
    /// On or off.
    pub enabled: bool,
}

/// Parses `ONMIC_WEBKIT_FEATURES`: `Name=1,Other=0` (also `true`/`false`, `on`/`off`; spaces
/// around the parts are ignored). A malformed part is an error that names it.
pub fn parse_switches(text: &str) -> Result<Vec<FeatureSwitch>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("`{part}`: expected Name=1 or Name=0"));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{part}`: a feature name is letters and digits"));
        }
        let enabled = match value.trim() {
            "1" | "true" | "on" => true,
            "0" | "false" | "off" => false,
            other => {
                return Err(format!(
                    "`{part}`: `{other}` is not 1/0, true/false or on/off"
                ));
            }
        };
        out.push(FeatureSwitch {
            name: name.to_string(),
            enabled,
        });
    }
    Ok(out)
}

/// The environment variable that sets WebKit features for a trial (`Name=1,Other=0`).
pub const FEATURES_VAR: &str = "ONMIC_WEBKIT_FEATURES";

/// What [`set_before_first_page`] was asked for; read by its hook.
#[cfg(target_os = "linux")]
static SWITCHES: std::sync::OnceLock<Vec<FeatureSwitch>> = std::sync::OnceLock::new();
/// Per switch, whether this WebKitGTK knew the feature (set once the hook has run).
#[cfg(target_os = "linux")]
static KNOWN: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();

/// Sets `switches` on the first web view's settings before its first page is created: WebKit
/// reads some switches (damage tracking among them) only when it creates a page, and Tauri loads
/// the window's page before the app's own code can reach the web view. A GLib emission hook on
/// GTK's `parent-set` signal sees the web view when Tauri puts it in its window, which is before
/// the first load; the hook removes itself there. Call it once, before Tauri builds the window
/// (the executable's `main`); later calls do nothing.
#[cfg(target_os = "linux")]
pub fn set_before_first_page(switches: Vec<FeatureSwitch>) {
    use std::ffi::c_char;
    use webkit2gtk::glib::gobject_ffi as gobject;

    unsafe extern "C" {
        fn gtk_widget_get_type() -> webkit2gtk::glib::ffi::GType;
    }
    if switches.is_empty() || SWITCHES.set(switches).is_err() {
        return;
    }
    // SAFETY: GObject's type system needs no initialisation (GLib ≥ 2.36); referencing the
    // widget class registers its signals so that `parent-set` can be looked up; the hook is a
    // plain function with no data to free.
    unsafe {
        let widget = gtk_widget_get_type();
        gobject::g_type_class_ref(widget);
        let signal = gobject::g_signal_lookup(c"parent-set".as_ptr().cast::<c_char>(), widget);
        if signal != 0 {
            gobject::g_signal_add_emission_hook(
                signal,
                0,
                Some(on_parent_set),
                std::ptr::null_mut(),
                None,
            );
        }
    }
}

/// What the hook did: each switch and whether WebKitGTK knew it; `None` until a web view was
/// seen (or when nothing was asked for).
#[cfg(target_os = "linux")]
pub fn applied() -> Option<Vec<(FeatureSwitch, bool)>> {
    let known = KNOWN.get()?;
    Some(
        SWITCHES
            .get()?
            .iter()
            .cloned()
            .zip(known.iter().copied())
            .collect(),
    )
}

#[cfg(target_os = "linux")]
unsafe extern "C" fn on_parent_set(
    _hint: *mut webkit2gtk::glib::gobject_ffi::GSignalInvocationHint,
    n_params: std::ffi::c_uint,
    params: *const webkit2gtk::glib::gobject_ffi::GValue,
    _data: webkit2gtk::glib::ffi::gpointer,
) -> webkit2gtk::glib::ffi::gboolean {
    use webkit2gtk::glib::gobject_ffi as gobject;
    const KEEP: webkit2gtk::glib::ffi::gboolean = 1;
    if n_params < 1 || params.is_null() {
        return KEEP;
    }
    // SAFETY: GLib passes the emitting instance as the first value; it is a live GtkWidget.
    unsafe {
        let instance = gobject::g_value_get_object(params);
        if instance.is_null()
            || gobject::g_type_check_instance_is_a(
                instance.cast(),
                webkit2gtk::ffi::webkit_web_view_get_type(),
            ) == 0
        {
            return KEEP;
        }
        let settings = webkit2gtk::ffi::webkit_web_view_get_settings(instance.cast());
        let switches = SWITCHES.get().map(Vec::as_slice).unwrap_or_default();
        let _ = KNOWN.set(apply_to_settings(settings.cast(), switches));
    }
    0 // the first web view is set: remove the hook
}

/// Sets `switches` on a `WebKitSettings`; per switch, whether WebKitGTK knows the feature (an
/// unknown name is reported, not an error: the names change between versions).
///
/// # Safety
/// `settings` is a live `WebKitSettings`.
#[cfg(target_os = "linux")]
unsafe fn apply_to_settings(
    settings: *mut std::ffi::c_void,
    switches: &[FeatureSwitch],
) -> Vec<bool> {
    use std::ffi::{CStr, c_char, c_int, c_void};

    #[link(name = "webkit2gtk-4.1")]
    unsafe extern "C" {
        fn webkit_settings_get_all_features() -> *mut c_void;
        fn webkit_feature_list_get_length(list: *mut c_void) -> usize;
        fn webkit_feature_list_get(list: *mut c_void, index: usize) -> *mut c_void;
        fn webkit_feature_list_unref(list: *mut c_void);
        fn webkit_feature_get_identifier(feature: *mut c_void) -> *const c_char;
        fn webkit_settings_set_feature_enabled(
            settings: *mut c_void,
            feature: *mut c_void,
            enabled: c_int,
        );
    }
    let mut known = vec![false; switches.len()];
    if settings.is_null() {
        return known;
    }
    // SAFETY: WebKitGTK's documented API (2.42+); the list is owned here and unreffed once, the
    // features it holds live as long as it, and each identifier is a NUL-terminated string it owns.
    unsafe {
        let list = webkit_settings_get_all_features();
        if list.is_null() {
            return known;
        }
        for i in 0..webkit_feature_list_get_length(list) {
            let feature = webkit_feature_list_get(list, i);
            if feature.is_null() {
                continue;
            }
            let id = webkit_feature_get_identifier(feature);
            if id.is_null() {
                continue;
            }
            let id = CStr::from_ptr(id).to_string_lossy();
            for (k, s) in switches.iter().enumerate() {
                if s.name == id {
                    webkit_settings_set_feature_enabled(settings, feature, c_int::from(s.enabled));
                    known[k] = true;
                }
            }
        }
        webkit_feature_list_unref(list);
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_and_bad_parts_are_named() {
        let s =
            parse_switches(" UseDamagingInformationForCompositing=1, UnifyDamagedRegions=off ,")
                .unwrap();
        assert_eq!(
            s,
            vec![
                FeatureSwitch {
                    name: "UseDamagingInformationForCompositing".into(),
                    enabled: true
                },
                FeatureSwitch {
                    name: "UnifyDamagedRegions".into(),
                    enabled: false
                }
            ]
        );
        assert_eq!(parse_switches("").unwrap(), vec![]);
        for bad in ["Name", "=1", "Na me=1", "Name=yes", "Name=1,Other"] {
            let e = parse_switches(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }
}
