//! Onmic's audio engine: devices (cpal), the DSP chain, music sources, effects, Opus and meters.
//! No network and no UI; the Studio and the offline tools drive it.
