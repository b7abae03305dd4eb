//! The CRI `runtime.v1` wire format (placeholder until the proto transcription lands).
