//! The one mapping from runtime host errors to gRPC status codes.
//!
//! Owns `From<RegistryError> for Status` (and for the executor's `WasmError` and a spec's
//! `FieldError`): NotFound for a missing module file or instance, InvalidArgument for a bad
//! module, world, import or spec, ResourceExhausted when no instance slot is free, Internal for
//! the host's own trouble. Must not: be bypassed with ad hoc `Status::...` elsewhere.

use tonic::Status;

use super::container::ContainerError;
use super::convert::FieldError;
use super::registry::RegistryError;
use crate::wasm::WasmError;

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Wasm(e) => e.into(),
            RegistryError::NotFound(_) => Status::not_found(e.to_string()),
            RegistryError::NoContainers | RegistryError::Precondition { .. } => {
                Status::failed_precondition(e.to_string())
            }
            RegistryError::Container(ContainerError::Spec { .. }) => {
                Status::invalid_argument(e.to_string())
            }
            RegistryError::Container(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<WasmError> for Status {
    fn from(e: WasmError) -> Self {
        let message = e.to_string();
        if e.is_not_found() {
            Status::not_found(message)
        } else if e.is_invalid_input() {
            Status::invalid_argument(message)
        } else if matches!(e, WasmError::Exhausted(_)) {
            Status::resource_exhausted(message)
        } else {
            tracing::error!(error = %message, "runtime host error");
            Status::internal(message)
        }
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let missing = WasmError::Read {
            path: "/m.wasm".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(Status::from(missing).code(), Code::NotFound);
        let invalid = WasmError::Invalid {
            path: "/m.wasm".into(),
            message: "x".into(),
        };
        let s = Status::from(invalid);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid wasm module /m.wasm: x");
        let full = WasmError::Exhausted("all taken".into());
        assert_eq!(Status::from(full).code(), Code::ResourceExhausted);
        let gone = RegistryError::NotFound("a".into());
        assert_eq!(Status::from(gone).code(), Code::NotFound);
    }
}
