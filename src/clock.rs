//! Milliseconds for stage timings, natively and in the browser, where `std::time::Instant`
//! does not exist (wasm32-unknown-unknown panics on it): `performance.now()` there, in the page
//! and in workers alike.

/// A point in time, in milliseconds since an arbitrary start that stays fixed for the process.
pub fn now_ms() -> f64 {
    #[cfg(not(target_family = "wasm"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(all(target_family = "wasm", feature = "web"))]
    {
        let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
        let now = performance.as_ref().and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok());
        match (performance, now.and_then(|f| wasm_bindgen::JsCast::dyn_into::<js_sys::Function>(f).ok())) {
            (Some(p), Some(now)) => now.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
            _ => js_sys::Date::now(),
        }
    }
    #[cfg(all(target_family = "wasm", not(feature = "web")))]
    {
        0.0
    }
}

/// Laps of a stopwatch: each call to [`Stopwatch::lap`] gives the milliseconds since the last.
pub struct Stopwatch(f64);

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch(now_ms())
    }

    pub fn lap(&mut self) -> f64 {
        let now = now_ms();
        let lap = now - self.0;
        self.0 = now;
        lap
    }
}
