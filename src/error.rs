//! The one error type of the wordmask core. Every variant names what was wrong and with which
//! value, so a message can be shown to a person as it is.

use thiserror::Error;

/// Errors from loading, configuring and running models.
#[derive(Debug, Error)]
pub enum Error {
    /// The bytes are not a checkpoint we can read (truncated, corrupt, unknown container).
    #[error("cannot read checkpoint {source_name}: {reason}")]
    Format { source_name: String, reason: String },

    /// The checkpoint was read, but its tensors do not fit the architecture of `config.json`.
    /// Lists every missing, mis-shaped and unexpected tensor by name.
    #[error("checkpoint {source_name} does not match the {architecture} architecture ({count} problems):\n{}", .problems.join("\n"))]
    Mismatch { source_name: String, architecture: String, count: usize, problems: Vec<String> },

    /// A video could not be read (not a Y4M stream, a colour format it does not hold, a frame
    /// cut short); the message names the stream and, for a frame, its number.
    #[error("cannot read video {source_name}: {reason}")]
    Video { source_name: String, reason: String },

    /// `config.json` is missing, malformed, or describes an architecture we do not support.
    #[error("invalid model config: {0}")]
    Config(String),

    /// An argument is out of range or otherwise unusable.
    #[error("{0}")]
    InvalidInput(String),

    /// Something the caller asked for that this build does not provide.
    #[error("not supported: {0}")]
    Unsupported(String),

    /// No GPU adapter could be opened: the browser has no WebGPU (or gave no adapter), or
    /// natively wgpu found none (no driver).
    #[error("compute device error: {0}")]
    NoGpu(String),

    /// The compute device failed (lost device, failed read-back, a setting it refused).
    #[error("compute device error: {0}")]
    Device(String),

    /// A file could not be written (a full disk, a folder that cannot be written to); the
    /// message names the file.
    #[error("{0}")]
    Io(String),
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure as a stable name, for a program to act on (the web build's errors
    /// carry it as `code`; docs/web.md lists what each calls for):
    ///
    /// | variant | code |
    /// | --- | --- |
    /// | [`Error::Format`] | `not-a-checkpoint` |
    /// | [`Error::Mismatch`], [`Error::Config`] | `wrong-architecture` |
    /// | [`Error::Video`] | `not-a-video` |
    /// | [`Error::InvalidInput`] | `invalid-input` |
    /// | [`Error::Unsupported`] | `unsupported` |
    /// | [`Error::NoGpu`] | `no-webgpu` |
    /// | [`Error::Device`] | `device-lost` |
    /// | [`Error::Io`] | `io` |
    pub fn code(&self) -> &'static str {
        match self {
            Error::Format { .. } => "not-a-checkpoint",
            Error::Mismatch { .. } | Error::Config(_) => "wrong-architecture",
            Error::Video { .. } => "not-a-video",
            Error::InvalidInput(_) => "invalid-input",
            Error::Unsupported(_) => "unsupported",
            Error::NoGpu(_) => "no-webgpu",
            Error::Device(_) => "device-lost",
            Error::Io(_) => "io",
        }
    }

    pub(crate) fn format(source_name: &str, reason: impl Into<String>) -> Self {
        Error::Format { source_name: source_name.to_string(), reason: reason.into() }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidInput(reason.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_code() {
        let s = || "x".to_string();
        let cases = [
            (Error::format("model.safetensors", "truncated"), "not-a-checkpoint"),
            (
                Error::Mismatch { source_name: s(), architecture: s(), count: 1, problems: vec![s()] },
                "wrong-architecture",
            ),
            (Error::Config(s()), "wrong-architecture"),
            (Error::Video { source_name: s(), reason: s() }, "not-a-video"),
            (Error::invalid("no model is loaded yet"), "invalid-input"),
            (Error::Unsupported(s()), "unsupported"),
            (Error::NoGpu(s()), "no-webgpu"),
            (Error::Device(s()), "device-lost"),
            (Error::Io(s()), "io"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }
}
