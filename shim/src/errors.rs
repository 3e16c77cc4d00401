//! ttrpc status errors, one constructor per gRPC code the task service answers with.
//!
//! containerd maps these codes back to its own errors (`NotFound`, `FailedPrecondition`, ...), so
//! `ctr` prints the message after the code; every message names the container, exec or field.

use containerd_shim::protos::ttrpc::{self, Code};

fn status(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

pub fn not_found(message: impl Into<String>) -> ttrpc::Error {
    status(Code::NOT_FOUND, message)
}

pub fn invalid(message: impl Into<String>) -> ttrpc::Error {
    status(Code::INVALID_ARGUMENT, message)
}

pub fn exists(message: impl Into<String>) -> ttrpc::Error {
    status(Code::ALREADY_EXISTS, message)
}

pub fn precondition(message: impl Into<String>) -> ttrpc::Error {
    status(Code::FAILED_PRECONDITION, message)
}

pub fn unimplemented(message: impl Into<String>) -> ttrpc::Error {
    status(Code::UNIMPLEMENTED, message)
}

pub fn internal(message: impl Into<String>) -> ttrpc::Error {
    status(Code::INTERNAL, message)
}
